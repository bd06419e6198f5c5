// The floatd dashboard: reads the admin API (signed in by the session cookie) and draws it.
// No framework and no external requests; the chart is plain SVG.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const HEADERS = { 'x-floatd-dashboard': '1' };
let serverNow = Date.now();
let serverSkew = 0;

function $(id) {
  return document.getElementById(id);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options) {
  const response = await fetch(path, { credentials: 'same-origin', ...options, headers: { ...HEADERS, ...((options && options.headers) || {}) } });
  if (response.status === 401) {
    window.location.assign('/login');
    throw new Error('signed out');
  }
  const body = await response.json();
  if (!response.ok || body.ok === false) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

const pad = (n) => String(n).padStart(2, '0');
function localTime(t, withDate) {
  const d = new Date(t);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
}

function span(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 86400)} days`;
  return ms < 0 ? `${text} ago` : `in ${text}`;
}

function who(e) {
  return `${e.user || '?'}@${e.host || '?'}`;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

/** The words floatd status uses for each key state (src/app/key-state.ts). */
const KEY_STATE_TEXT = {
  'not-yet-valid': 'pending',
  'not-activated': 'not activated',
  'binding-broken': 'binding broken',
  'activation-invalid': 'activation invalid',
  'revalidation-overdue': 'revalidation overdue',
  'activation-unchecked': 'activation not checked yet',
};

/** A key's activation as the keys panel shows it: what it is, and what to run when it cannot grant. */
function activationText(k) {
  if (!k.activation) return 'not needed';
  const a = k.activation;
  if (a.state === 'active') return a.graceUntil ? `active; vendor unreachable, grants until ${a.graceUntil}` : 'active';
  const words = { 'not-activated': 'not activated', 'hardware-changed': 'binding broken', invalid: 'invalid', 'revalidation-overdue': 'revalidation overdue', unchecked: 'not checked yet' }[a.state] || a.state;
  return k.action ? `${words}: run ${k.action}` : words;
}

function renderStatus(status) {
  const cards = status.products.map((p) => {
    // Only seats that can be granted count: those of a key lacking its activation are shown apart.
    const grantable = p.seatsGrantable ?? p.seatsTotal;
    const full = p.seatsInUse >= grantable && p.seatsTotal > 0;
    const bar = el('progress', { max: String(Math.max(grantable, 1)), value: String(Math.min(p.seatsInUse, grantable)) });
    return el(
      'div',
      { class: `seat${full ? ' full' : ''}`, 'data-product': p.product },
      el('div', { class: 'name', text: p.product }),
      el('div', { class: 'count' }, el('span', { class: 'in-use', text: String(p.seatsInUse) }), ' / ', el('span', { class: 'total', text: String(grantable) })),
      bar,
      el('div', { class: 'muted free', text: `${p.seatsFree} free` }),
      ...(p.seatsTotal > grantable ? [el('div', { class: 'not-grantable', text: `${p.seatsTotal - grantable} more seat(s) cannot be granted: their key lacks its activation` })] : []),
    );
  });
  $('seats').replaceChildren(...(cards.length > 0 ? cards : [el('p', { class: 'muted', text: 'No product is licensed.' })]));
  let mode = `mode: ${status.mode}`;
  if (status.evaluation) mode += status.evaluation.expired ? ' — evaluation over' : ` — ${status.evaluation.timeLeft} of evaluation left`;
  $('mode').textContent = `${mode}; ${status.leasesHeld} lease(s) held`;
  fill(
    $('keys').tBodies[0],
    status.keys.map((k) =>
      el(
        'tr',
        {},
        el('td', { text: k.id.slice(0, 8), title: `${k.id} (${k.licensee})` }),
        el('td', { text: k.product }),
        el('td', { class: 'num', text: `${k.seatsInUse}/${k.seats}` }),
        el('td', { text: k.expires ? k.expires.slice(0, 10) : 'never', title: k.expires || '' }),
        el('td', { class: 'state', text: k.state === 'valid' && k.timeLeft !== null ? `valid, ${k.timeLeft} left` : (KEY_STATE_TEXT[k.state] || k.state) }),
        el('td', { class: 'activation', text: activationText(k), title: (k.activation && k.activation.message) || '' }),
      ),
    ),
  );
  // Activation state, when the server reports one.
  const activation = status.activation;
  const dl = $('activation');
  if (activation && typeof activation === 'object') {
    dl.hidden = false;
    dl.replaceChildren(...Object.entries(activation).flatMap(([k, v]) => [el('dt', { text: `activation ${k}` }), el('dd', { text: typeof v === 'object' ? JSON.stringify(v) : String(v) })]));
  } else dl.hidden = true;
}

function renderServer(server) {
  serverNow = Date.parse(server.now);
  serverSkew = serverNow - Date.now();
  const health = $('health');
  health.textContent = server.ready ? 'ready' : `not ready: ${server.reason}`;
  health.className = `pill ${server.ready ? 'ok' : 'bad'}`;
  const facts = [
    ['version', server.version],
    ['readiness', server.reason],
    ['up since', server.startedAt ? `${localTime(Date.parse(server.startedAt), true)} (${span(-server.uptimeSeconds * 1000).replace(' ago', '')})` : '-'],
    ['lease length', `${server.leaseSeconds} s`],
    ['lease-log anchor', server.logAnchor ? `${server.logAnchor.hash} (#${server.logAnchor.entry})` : '-'],
  ];
  $('server').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v, 'data-fact': k })]));
  fill(
    $('listeners').tBodies[0],
    server.listeners.map((l) => el('tr', {}, el('td', { text: l.name }), el('td', { text: l.scheme }), el('td', { text: `${l.address}:${l.port}` }), el('td', { text: l.suspended ? 'suspended' : 'accepting' }))),
  );
}

function renderLeases(leases) {
  const now = Date.now() + serverSkew;
  $('lease-count').textContent = `(${leases.length})`;
  $('leases-empty').hidden = leases.length > 0;
  fill(
    $('leases').tBodies[0],
    leases.map((l) => {
      const button = el('button', { class: 'small danger', type: 'button', text: 'Revoke', 'data-lease': l.id });
      button.addEventListener('click', () => askRevoke(l));
      return el(
        'tr',
        { 'data-lease': l.id },
        el('td', { text: l.product }),
        el('td', { text: who(l) }),
        el('td', { class: 'opt', text: l.instance }),
        el('td', { text: localTime(Date.parse(l.grantedAt), true) }),
        el('td', { text: span(Date.parse(l.expiresAt) - now), title: l.expiresAt }),
        el('td', {}, button),
      );
    }),
  );
}

function renderDenials(events) {
  const recent = events.slice().reverse();
  $('denials-empty').hidden = recent.length > 0;
  fill(
    $('denials').tBodies[0],
    recent.map((e) =>
      el('tr', { title: e.message || '' }, el('td', { text: localTime(e.ts, true) }), el('td', { text: who(e) }), el('td', { text: e.product || '-' }), el('td', { text: e.code || '' }), el('td', { text: e.reason || e.message || '' })),
    ),
  );
}

/** Peak (bars), average (inner bars) and pool size (a line) per bucket. */
function renderChart(report) {
  const buckets = report.buckets;
  const W = 900;
  const H = 260;
  const left = 36;
  const bottom = 24;
  const top = 10;
  const plotW = W - left - 8;
  const plotH = H - top - bottom;
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.peak, b.poolSize)));
  const y = (v) => top + plotH - (v / max) * plotH;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'data-buckets': buckets.length });
  const ticks = max <= 5 ? max : 4;
  for (let i = 0; i <= ticks; i++) {
    const v = Math.round((max * i) / ticks);
    root.append(svg('line', { class: 'axis', x1: left, x2: W - 8, y1: y(v), y2: y(v) }));
    root.append(svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v)));
  }
  const step = plotW / Math.max(buckets.length, 1);
  const labelEvery = Math.max(1, Math.ceil(buckets.length / 8));
  const points = [];
  buckets.forEach((b, i) => {
    const x = left + i * step;
    const bar = svg('rect', { class: 'bar', x: x + step * 0.12, width: Math.max(1, step * 0.76), y: y(b.peak), height: Math.max(0, y(0) - y(b.peak)) });
    bar.append(svg('title', {}, `${localTime(Date.parse(b.start), true)}: peak ${b.peak}, average ${b.average}, pool ${b.poolSize}, ${b.grants} grant(s), ${b.denials} denial(s)`));
    root.append(bar);
    root.append(svg('rect', { class: 'avg', x: x + step * 0.3, width: Math.max(1, step * 0.4), y: y(b.average), height: Math.max(0, y(0) - y(b.average)) }));
    points.push(`${x},${y(b.poolSize)}`, `${x + step},${y(b.poolSize)}`);
    if (i % labelEvery === 0) {
      const d = new Date(Date.parse(b.start));
      const label = report.by === 'hour' ? `${pad(d.getHours())}:00` : `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      root.append(svg('text', { x: x + 2, y: H - 6 }, label));
    }
  });
  if (points.length > 0) root.append(svg('polyline', { class: 'pool', points: points.join(' ') }));
  $('chart').replaceChildren(root);
  const t = report.total;
  $('usage-total').textContent =
    `peak ${t.peak} of ${t.poolSize}, average ${t.average}` +
    (t.utilisationPercent === null ? '' : ` (${t.utilisationPercent}% utilisation)`) +
    `, ${t.grants} grant(s), ${t.denials} denial(s) of which ${t.trueDenials} true, ${t.uniqueUsers} user(s)`;
}

async function refreshChart() {
  const by = $('range').value;
  const to = serverNow;
  const from = by === 'hour' ? to - 24 * 3600e3 : to - 30 * 86400e3;
  const q = new URLSearchParams({ by, from: new Date(from).toISOString(), to: new Date(to).toISOString() });
  try {
    renderChart((await api(`/v1/admin/reports/usage?${q}`)).report);
  } catch (err) {
    $('usage-total').textContent = `usage unavailable: ${err.message}`;
  }
}

async function refresh() {
  try {
    const [server, status, leases, denials] = await Promise.all([api('/v1/admin/server'), api('/v1/status'), api('/v1/admin/leases'), api('/v1/admin/log?event=denied&limit=15')]);
    renderServer(server);
    renderStatus(status);
    renderLeases(leases.leases);
    renderDenials(denials.events);
    $('updated').textContent = `updated ${localTime(Date.now(), false)}`;
    document.body.dataset.loaded = 'true';
  } catch (err) {
    $('updated').textContent = `update failed: ${err.message}`;
  }
}

let revoking = null;
function askRevoke(lease) {
  revoking = lease;
  $('revoke-who').textContent = `${lease.product}: ${who(lease)} (${lease.instance}), lease ${lease.id.slice(0, 8)}`;
  $('revoke-reason').value = '';
  $('revoke-block').value = '';
  $('revoke-error').textContent = '';
  $('revoke-dialog').showModal();
}

function setup() {
  $('revoke-cancel').addEventListener('click', () => $('revoke-dialog').close());
  $('revoke-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const reason = $('revoke-reason').value.trim();
    if (revoking === null || reason === '') return;
    try {
      // "SECONDS" or "SECONDS instance": the block the operator chose, if any.
      const [seconds, scope] = $('revoke-block').value.split(' ');
      const block = seconds ? { blockSeconds: Number(seconds), blockScope: scope === 'instance' ? 'instance' : 'user' } : {};
      await api(`/v1/admin/leases/${encodeURIComponent(revoking.id)}/revoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason, ...block }) });
      $('revoke-dialog').close();
      revoking = null;
      await refresh();
    } catch (err) {
      $('revoke-error').textContent = err.message;
    }
  });
  $('range').addEventListener('change', refreshChart);
  refresh().then(refreshChart);
  setInterval(refresh, 5000);
  setInterval(refreshChart, 60000);
}

setup();
