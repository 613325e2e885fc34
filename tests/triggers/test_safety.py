"""Safe on a bad day: erasure reaches Temporal (crypto-shredding), an attempt whose outcome is
unknown is not resent blindly, and dependencies that are down answer 503, not 500."""

from __future__ import annotations

import base64
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from engine.app.journeys import shipped_journeys
from engine.channels.push.apns import apns_id_for
from engine.config.nudge_toml import load_config
from engine.config.settings import Settings
from engine.context import Context
from engine.store.data_keys import StoreUserKeys
from engine.temporal.client import data_converter
from engine.temporal.codec import ErasedUserError, generate_key
from tests.harness import Stack, eventually
from tests.journeys import TEST_JOURNEYS
from tests.kit.processes import start_worker, worker_env
from tests.peers.apns import ApnsPeer
from tests.peers.tcp_proxy import TcpProxy

KEYS = f"k1:{generate_key()}"


@contextlib.asynccontextmanager
async def encrypted_stack(
    url: str, temporal_client: Client, task_queue: str
) -> AsyncIterator[Stack]:
    """The product with payload encryption and per-user keys, as `nudge api`/`worker` run."""
    base, _, schema = url.partition("#schema=")
    settings = Settings(
        database_url=base, database_schema=schema or None, encryption_keys=SecretStr(KEYS)
    )
    async with Context.opened(settings) as keys_context:
        config = temporal_client.config()
        config["data_converter"] = data_converter(
            settings, user_keys=StoreUserKeys(keys_context.sessions)
        )
        client = Client(**config)
        async with Stack(
            database_url=url, client=client, task_queue=task_queue, journeys=TEST_JOURNEYS
        ) as s:
            yield s


async def test_erasure_shreds_what_temporal_holds_about_the_user(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with encrypted_stack(postgres_url, temporal_client, task_queue) as s:
        await s.profile(
            "eve", timezone="UTC", email="eve@example.com", attributes={"first_name": "Evelyn"}
        )
        await s.device("eve")
        await s.track("eve", "Seq Start", {"note": "Evelyn's secret"})
        [run] = await s.wait_runs("eve")
        raw = await temporal_client.get_workflow_handle(run["workflow_id"]).fetch_history()
        text = raw.to_json()
        assert "Evelyn" not in text and "secret" not in text  # ciphertext on the server
        assert "nudge-user" in text  # each payload names the user key that sealed it
        reader = data_converter(
            Settings(encryption_keys=SecretStr(KEYS)), user_keys=StoreUserKeys(s.context.sessions)
        )
        started = raw.events[0].workflow_execution_started_event_attributes
        [entry] = await reader.decode(started.input.payloads)
        assert entry["event"]["properties"]["note"] == "Evelyn's secret"
        assert (await s.http.delete("/v1/users/eve")).is_success
        fresh = data_converter(  # a process that never cached the salt
            Settings(encryption_keys=SecretStr(KEYS)), user_keys=StoreUserKeys(s.context.sessions)
        )
        with pytest.raises(ErasedUserError):
            await fresh.decode(started.input.payloads)
        # The raw bytes are still there, and still ciphertext.
        assert base64.b64decode(
            raw.to_json_dict()["events"][0]["workflowExecutionStartedEventAttributes"]["input"][
                "payloads"
            ][0]["data"]
        )


def _apns_config(tmp_path: Path, apns: ApnsPeer, *, marketing: str) -> Path:
    config = tmp_path / "nudge.toml"
    config.write_text(
        '[channels.push]\nprovider = "native"\n'
        f'apns = {{ key_file = "{apns.key_file}", key_id = "{apns.key_id}", '
        f'team_id = "{apns.team_id}", topic = "{apns.topic}", '
        f'endpoint = "{apns.endpoint}", ca_file = "{apns.ca_file}", timeout = "10m" }}\n'
        f'[delivery.unknown_outcome]\nmarketing = "{marketing}"\n'
        '[journeys.abandoned_cart]\nnudge_after = "1s"\n'
    )
    return config


@pytest.mark.parametrize("marketing", ["leave", "resend"])
async def test_a_send_whose_worker_died_mid_call_follows_the_unknown_outcome_policy(
    marketing: str, postgres_url: str, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    with ApnsPeer() as apns:
        config = _apns_config(tmp_path, apns, marketing=marketing)
        env = worker_env(postgres_url, temporal_client, task_queue, config)
        log = tmp_path / "worker.log"
        async with Stack(  # the `nudge worker` subprocess runs the shipped journeys
            database_url=postgres_url,
            client=temporal_client,
            task_queue=task_queue,
            journeys=shipped_journeys(),
            config=load_config(config),
            run_worker=False,
        ) as s:
            await s.device("kim", "ios", f"hang-{marketing}")
            first = await start_worker(env, log)
            second = None
            try:
                await s.track("kim", "Cart Updated")

                async def held() -> bool:
                    return any(r.token == f"hang-{marketing}" for r in apns.received)

                await eventually(held, timeout=120)
                first.send_signal(signal.SIGKILL)  # the request reached APNs: outcome unknown
                await first.wait()
                second = await start_worker(env, log)  # Temporal retries the activity here

                async def settled() -> list[dict[str, object]] | None:
                    found = await s.messages("kim")
                    return found if found and found[0]["status"] != "pending" else None

                await eventually(settled, timeout=180)
            finally:
                for worker in (first, second):
                    if worker is not None and worker.returncode is None:
                        worker.terminate()
                        await worker.wait()
            [message] = await s.messages("kim")
            tried = [r for r in apns.received if r.token == f"hang-{marketing}"]
            if marketing == "leave":
                assert (message["status"], message["reason"]) == ("unknown", "unknown_outcome")
                assert len(tried) == 1  # never sent twice
            else:
                assert message["status"] == "sent" and message["attempts"] == 2
                assert [r.status for r in tried] == [0, 200]
                assert {r.headers["apns-id"] for r in tried} == {apns_id_for(message["id"])}


async def test_postgres_down_is_a_503_with_retry_after_and_nothing_is_lost(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    base, _, schema = postgres_url.partition("#schema=")
    async with TcpProxy(5432) as proxy:
        through = base.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + f"#schema={schema}"
        async with Stack(
            database_url=through, client=temporal_client, task_queue=task_queue, run_worker=False
        ) as s:
            await s.track("pat", "Before", messageId="before-1")
            await proxy.cut()
            down = await s.http.post("/v1/track", json={"userId": "pat", "event": "During"})
            assert down.status_code == 503, down.text
            assert down.headers["content-type"] == "application/problem+json"
            assert int(down.headers["retry-after"]) > 0
            ready = await s.http.get("/readyz")
            assert ready.status_code == 503 and not ready.json()["checks"]["database"]["ok"]
            assert (await s.http.get("/healthz")).status_code == 200  # alive, just not ready
            await proxy.restore()

            async def back() -> bool:
                answer = await s.http.post("/v1/track", json={"userId": "pat", "event": "After"})
                return answer.status_code == 200

            await eventually(back, timeout=120)
            names = [e["name"] for e in (await s.call("GET", "/v1/users/pat/export"))["events"]]
            assert names[0] == "Before" and "After" in names
