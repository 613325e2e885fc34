// Sends Segment calls with the official, unmodified @segment/analytics-node client.
//
// stdin: one JSON object
//   {host, writeKey, calls: [{type, messageId, userId, ...}], flushInterval, closeTimeoutMs}
// stdout: one JSON object per line, in the order the client reported them:
//   {"kind":"version","version":"3.1.0"}
//   {"kind":"http_request","method":"POST","url":"...","headers":{...},"bodyBytes":123}
//   {"kind":"http_response","status":200,"statusText":"OK"}
//   {"kind":"callback","messageId":"...","error":null | "..."}
//   {"kind":"error","code":"delivery_failure","reason":"...","messageId":"..."}
//   {"kind":"done"}
// Only configuration is passed to the client (host, writeKey, flushInterval): what it
// sends and how it retries are its own defaults.
import { Analytics } from '@segment/analytics-node'

const emit = (line) => process.stdout.write(JSON.stringify(line) + '\n')
const describe = (reason) =>
  reason instanceof Error ? reason.message : reason === undefined ? null : String(reason)

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

const input = await readStdin()
const analytics = new Analytics({
  writeKey: input.writeKey,
  host: input.host,
  flushInterval: input.flushInterval,
})
emit({ kind: 'version', version: analytics.VERSION })

analytics.on('http_request', ({ method, url, headers, body }) =>
  emit({ kind: 'http_request', method, url, headers, bodyBytes: Buffer.byteLength(body) })
)
analytics.on('http_response', ({ status, statusText }) =>
  emit({ kind: 'http_response', status, statusText })
)
analytics.on('error', ({ code, reason, ctx }) =>
  emit({ kind: 'error', code, reason: describe(reason), messageId: ctx?.event?.messageId ?? null })
)

const methods = {
  identify: (c, cb) => analytics.identify(c, cb),
  track: (c, cb) => analytics.track(c, cb),
  page: (c, cb) => analytics.page(c, cb),
  screen: (c, cb) => analytics.screen(c, cb),
  group: (c, cb) => analytics.group(c, cb),
  alias: (c, cb) => analytics.alias(c, cb),
}

for (const { type, ...params } of input.calls) {
  methods[type](params, (err) =>
    emit({ kind: 'callback', messageId: params.messageId, error: describe(err) })
  )
}

// closeAndFlush resolves once every call was delivered or failed. On its timeout it
// aborts the publisher instead, and the calls still pending fail with "Flush timeout":
// their callbacks may print after "done", so the reader reads to the end of stdout.
await analytics.closeAndFlush({ timeout: input.closeTimeoutMs })
emit({ kind: 'done' })
