// An SMSC for Nudge's tests, on the npm `smpp` server (an independent SMPP implementation).
//
//   node smsc.js <port|0> <password>       ENQUIRE_MS=500 sends enquire_link every 500 ms
//
// stdout: one JSON object per line. The first is {"event":"listening","port":N}; then one per
// bind, submit (with the text, UDH and concatenation info as THIS library decoded them),
// receipt, enquire_link (either direction) and unbind.
// stdin: one JSON command per line, {"mo": {"from": "+1415...", "to": "NUDGE", "text": "STOP"}}
// pushes a mobile-originated SMS to every bound session.
// Submits to a destination starting with 999 are answered ESME_RTHROTTLED.
'use strict';

const smpp = require('smpp');
const readline = require('readline');

const port = parseInt(process.argv[2] || '0', 10);
const password = process.argv[3] || 'secret';
const enquireMs = parseInt(process.env.ENQUIRE_MS || '0', 10);

let nextId = 1;
const bound = new Set();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function concatOf(udhList) {
  for (const udh of udhList || []) {
    if (udh[0] === 0x00 && udh[1] === 3) return [udh[2], udh[3], udh[4]];
    if (udh[0] === 0x08 && udh[1] === 4) return [(udh[2] << 8) | udh[3], udh[4], udh[5]];
  }
  return null;
}

const server = smpp.createServer((session) => {
  let timer = null;
  session.on('error', (err) => emit({ event: 'session_error', error: String(err) }));
  session.on('close', () => {
    bound.delete(session);
    if (timer) clearInterval(timer);
    emit({ event: 'close' });
  });

  session.on('bind_transceiver', (pdu) => {
    if (pdu.password !== password) {
      emit({ event: 'bind', ok: false, system_id: pdu.system_id });
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'node-smsc' }));
    bound.add(session);
    emit({ event: 'bind', ok: true, system_id: pdu.system_id });
    if (enquireMs > 0) {
      timer = setInterval(() => {
        session.enquire_link({}, (resp) => {
          emit({ event: 'enquire_link_resp', status: resp.command_status });
        });
      }, enquireMs);
    }
  });

  session.on('enquire_link', (pdu) => {
    emit({ event: 'enquire_link' });
    session.send(pdu.response());
  });

  session.on('unbind', (pdu) => {
    emit({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });

  session.on('submit_sm', (pdu) => {
    const dest = pdu.destination_addr;
    if (dest.startsWith('999')) {
      emit({ event: 'throttled', destination: dest });
      session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
      return;
    }
    const id = 'n' + nextId++;
    const sm = pdu.short_message || {};
    const udh = (sm.udh || []).map((b) => Buffer.from(b).toString('hex'));
    emit({
      event: 'submit', id, source: pdu.source_addr, destination: dest,
      dest_addr_ton: pdu.dest_addr_ton, dest_addr_npi: pdu.dest_addr_npi,
      data_coding: pdu.data_coding, esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      text: typeof sm.message === 'string' ? sm.message : null, udh, concat: concatOf(sm.udh),
    });
    session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 1) {
      session.deliver_sm({
        source_addr: dest, source_addr_ton: 1, source_addr_npi: 1,
        destination_addr: pdu.source_addr,
        esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
        short_message: 'id:' + id + ' sub:001 dlvrd:001 submit date:2611280900 ' +
          'done date:2611280900 stat:DELIVRD err:000 text:',
        receipted_message_id: id,
        message_state: smpp.MESSAGE_STATE.DELIVERED,
      }, (resp) => emit({ event: 'receipt_resp', id, status: resp.command_status }));
    }
  });
});

server.on('error', (err) => {
  emit({ event: 'server_error', error: String(err) });
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit({ event: 'bad_command', error: String(err) });
    return;
  }
  if (cmd.mo) {
    for (const session of bound) {
      session.deliver_sm({
        source_addr: cmd.mo.from.replace(/^\+/, ''), source_addr_ton: 1, source_addr_npi: 1,
        destination_addr: cmd.mo.to, short_message: cmd.mo.text,
      }, (resp) => emit({ event: 'mo_resp', status: resp.command_status }));
    }
  }
});

process.on('SIGTERM', () => process.exit(0));
