// The official Customer.io Node client (customerio-node, pinned in
// package.json), unchanged, against a real trackd.
//
// cmd/trackd TestNodeClient starts `trackd serve`, runs `node --test` here
// with TRACKD_URL (base URL, no path), TRACKD_SITE_ID and TRACKD_API_KEY,
// then reads trackd's spool and checks that every call below left the
// record it expects. Every identifier is distinct ("node-<method>-N") so
// the Go side can find each call's record.
//
// When TRACKD_NODE_OUT names a file, the list of calls made is written
// there as JSON ([{method, id}]); the Go side checks it against its own
// table so the two cannot drift apart.
//
// Run by hand: start trackd with --workspace SITE:KEY, then
//   TRACKD_URL=http://127.0.0.1:8080 TRACKD_SITE_ID=SITE TRACKD_API_KEY=KEY node --test test/node/

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { TrackClient, CustomerIORequestError, IdentifierType } from 'customerio-node';

const base = process.env.TRACKD_URL;
const site = process.env.TRACKD_SITE_ID;
const key = process.env.TRACKD_API_KEY;
if (!base || !site || !key) {
  throw new Error('set TRACKD_URL, TRACKD_SITE_ID and TRACKD_API_KEY (see the comment at the top of this file)');
}

// The package's exports map hides package.json; read the installed copy.
const clientVersion = JSON.parse(
  readFileSync(new URL('./node_modules/customerio-node/package.json', import.meta.url), 'utf8'),
).version;

// No retries: trackd must answer every call right the first time, and a
// replayed request would show up as a duplicate record on the Go side.
const opts = { url: `${base}/api/v1`, timeout: 10_000, retry: { maxRetries: 0 } };
const cio = new TrackClient(site, key, opts);

const sent = []; // [{method, id}]
const covered = new Set();

const out = process.env.TRACKD_NODE_OUT;

// call runs one client method, records it, and returns its result. The
// list is rewritten on every call so it is complete whatever the order in
// which the runner finishes tests and hooks.
async function call(method, id, ...args) {
  covered.add(method);
  sent.push({ method, id });
  if (out) {
    writeFileSync(out, JSON.stringify(sent) + '\n');
  }
  return cio[method](...args);
}

const T = { timeout: 20_000 };

test('identify', T, async () => {
  assert.deepEqual(
    await call('identify', 'node-identify-1', 'node-identify-1', {
      email: 'node-identify-1@example.com',
      plan: 'pro',
      created_at: 1700000000,
      nested: { a: 1, b: [true, null] },
    }),
    {},
  );
});

test('identify with no data, identifier needing escapes', T, async () => {
  // encodeURIComponent: "/" becomes %2F, "@" %40, "ü" %C3%BC.
  assert.deepEqual(await call('identify', 'node-identify-2/ü@example.com', 'node-identify-2/ü@example.com'), {});
});

test('destroy', T, async () => {
  assert.deepEqual(await call('destroy', 'node-destroy-1', 'node-destroy-1'), {});
});

test('suppress', T, async () => {
  assert.deepEqual(await call('suppress', 'node-suppress-1', 'node-suppress-1'), {});
});

test('unsuppress', T, async () => {
  assert.deepEqual(await call('unsuppress', 'node-unsuppress-1', 'node-unsuppress-1'), {});
});

test('track', T, async () => {
  assert.deepEqual(
    await call('track', 'node-track-1', 'node-track-1', {
      name: 'node-purchase',
      id: '01JD7N0DE0000000000000TRK1',
      timestamp: 1700000001,
      data: { price: 9.5, sku: 'node-sku-1' },
    }),
    {},
  );
});

test('trackAnonymous', T, async () => {
  assert.deepEqual(
    await call('trackAnonymous', 'node-anon-1', 'node-anon-1', { name: 'node-anon-visit', data: { page: '/pricing' } }),
    {},
  );
});

test('trackAnonymous invite (no anonymous id)', T, async () => {
  assert.deepEqual(
    await call('trackAnonymous', 'node-invite-1', '', {
      name: 'node-invite',
      data: { recipient: 'node-invite-1@example.com' },
    }),
    {},
  );
});

test('trackPageView', T, async () => {
  assert.deepEqual(await call('trackPageView', 'node-page-1', 'node-page-1', '/node/pricing?x=1'), {});
});

test('trackPush', T, async () => {
  assert.deepEqual(
    await call('trackPush', 'node-push-delivery-1', {
      delivery_id: 'node-push-delivery-1',
      device_id: 'node-push-device-1',
      event: 'opened',
      timestamp: 1700000002,
    }),
    {},
  );
});

test('addDevice', T, async () => {
  assert.deepEqual(
    await call('addDevice', 'node-device-token-1', 'node-device-1', 'node-device-token-1', 'ios', {
      last_used: 1700000003,
      app_version: '1.2.3',
      push_enabled: 'true',
    }),
    {},
  );
});

test('addDevice with no data', T, async () => {
  assert.deepEqual(await call('addDevice', 'node-device-token-2', 'node-device-2', 'node-device-token-2', 'android'), {});
});

test('deleteDevice', T, async () => {
  assert.deepEqual(await call('deleteDevice', 'node-device-token-1/x', 'node-device-1', 'node-device-token-1/x'), {});
});

test('batch', T, async () => {
  assert.deepEqual(
    await call('batch', 'node-batch-1', [
      { type: 'person', action: 'identify', identifiers: { id: 'node-batch-1' }, attributes: { plan: 'free' } },
      {
        type: 'person',
        action: 'event',
        identifiers: { email: 'node-batch-2@example.com' },
        name: 'node-batch-event',
        timestamp: 1700000004,
        attributes: { n: 1 },
      },
      {
        type: 'object',
        action: 'identify',
        identifiers: { object_type_id: '1', object_id: 'node-batch-object-1' },
        attributes: { name: 'Acme' },
        cio_relationships: [{ identifiers: { id: 'node-batch-1' } }],
      },
      {
        type: 'delivery',
        action: 'event',
        identifiers: { id: 'node-batch-delivery-1' },
        name: 'opened',
        attributes: { device_token: 'node-batch-token-1' },
      },
      {
        type: 'person',
        action: 'add_device',
        identifiers: { id: 'node-batch-1' },
        device: { token: 'node-batch-token-2', platform: 'android' },
      },
    ]),
    {},
  );
});

test('entity', T, async () => {
  assert.deepEqual(
    await call('entity', 'node-entity-1', {
      type: 'person',
      action: 'event',
      identifiers: { id: 'node-entity-1' },
      name: 'node-entity-event',
      id: '01JD7N0DE0000000000000ENT1',
      timestamp: 1700000005,
      attributes: { source: 'node' },
    }),
    {},
  );
});

test('mergeCustomers', T, async () => {
  assert.deepEqual(
    await call(
      'mergeCustomers',
      'node-merge-primary-1',
      IdentifierType.Id,
      'node-merge-primary-1',
      IdentifierType.Email,
      'node-merge-secondary-1@example.com',
    ),
    {},
  );
});

test('getAccountRegion', T, async () => {
  const r = await call('getAccountRegion', '');
  assert.deepEqual(Object.keys(r).sort(), ['environment_id', 'region', 'url']);
  assert.equal(r.url, 'https://track.customer.io');
  assert.equal(r.region, 'us');
  assert.ok(Number.isSafeInteger(r.environment_id) && r.environment_id > 0, `environment_id ${r.environment_id}`);
});

test('addCustomersToSegment', T, async () => {
  assert.deepEqual(
    await call(
      'addCustomersToSegment',
      'node-seg-1@example.com',
      7,
      ['node-seg-1@example.com', 'node-seg-2@example.com'],
      IdentifierType.Email,
    ),
    {},
  );
});

test('removeCustomersFromSegment', T, async () => {
  assert.deepEqual(await call('removeCustomersFromSegment', 'node-seg-3', '8', ['node-seg-3']), {});
});

test('submitForm', T, async () => {
  // trackd answers 204 with no body, which the client turns into {}.
  assert.deepEqual(
    await call('submitForm', 'node-form-1', 'node-form-1', {
      email: 'node-form-1@example.com',
      name: 'Ada',
      plan: 'pro',
    }),
    {},
  );
});

test('reportMetric', T, async () => {
  assert.deepEqual(
    await call('reportMetric', 'node-metric-delivery-1', {
      delivery_id: 'node-metric-delivery-1',
      metric: 'clicked',
      timestamp: 1700000006,
      recipient: 'node-metric-1@example.com',
      href: 'https://example.com/node',
    }),
    {},
  );
});

test('unsubscribe', T, async () => {
  assert.deepEqual(await call('unsubscribe', 'node-unsub-delivery-1', 'node-unsub-delivery-1'), {});
});

test('unsubscribe false (resubscribe)', T, async () => {
  assert.deepEqual(await call('unsubscribe', 'node-unsub-delivery-2', 'node-unsub-delivery-2', false), {});
});

test('wrong credentials: CustomerIORequestError 401', T, async () => {
  const bad = new TrackClient(site, `${key}-wrong`, opts);
  await assert.rejects(bad.identify('node-bad-1', { email: 'node-bad-1@example.com' }), (err) => {
    assert.ok(err instanceof CustomerIORequestError, `got ${err}`);
    assert.equal(err.statusCode, 401);
    assert.equal(err.message, 'Unauthorized request');
    return true;
  });
  const unknownSite = new TrackClient(`${site}-unknown`, key, opts);
  await assert.rejects(unknownSite.getAccountRegion(), (err) => err instanceof CustomerIORequestError && err.statusCode === 401);
});

test('every TrackClient method was called', () => {
  assert.equal(clientVersion, '5.2.0');
  const methods = Object.getOwnPropertyNames(TrackClient.prototype).filter(
    (m) => m !== 'constructor' && typeof TrackClient.prototype[m] === 'function',
  );
  const missing = methods.filter((m) => !covered.has(m));
  assert.deepEqual(missing, [], `TrackClient methods not exercised: ${missing.join(', ')}`);
});

after(() => {
  if (!out) {
    console.log(JSON.stringify(sent));
  }
});
