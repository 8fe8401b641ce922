// Racker's rack view: live updates over Server-Sent Events, a node's panel
// on click, the event stream with a node filter. The page works without
// this file (a plain table that refreshes itself); with it, the rack that
// the server drew is kept current in place, never reloaded.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const PER_CABINET = 42, MIN_UNITS = 12, MAX_EVENTS = 300;
  const TERMINAL = new Set(['booted', 'ready', 'failed', 'excluding', 'excluded']);
  const st = { rack: null, skew: 0, sel: '', lastSeq: 0, hosts: {}, owner: {}, updates: 0, detailTimer: 0, loading: false, again: false };

  const dash = (s) => (s === undefined || s === null || s === '' ? '-' : String(s));
  const unitID = (mac) => 'u-' + mac.replace(/:/g, '');
  const phaseClass = (u) => (u.management ? 'management' : u.phase || 'pending');
  const phaseText = (u) => (u.management ? 'management node' : u.phase || 'pending');
  const roleType = (u) => [u.role, u.type].filter(Boolean).join(' · ');
  const bmcText = (b) => (b === true ? 'BMC ok' : b === false ? 'BMC no answer' : 'BMC ?');
  const osText = (os) => (os ? os : 'no OS yet');
  const note = (u) => (u.reason ? u.reason : u.last_error && !TERMINAL.has(u.phase) ? 'retrying: ' + u.last_error : '');
  const now = () => Date.now() + st.skew;

  function age(since) {
    if (!since || since.startsWith('0001')) return '';
    let s = Math.max(0, Math.floor((now() - Date.parse(since)) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s %= 60;
    return h ? `${h}h${m}m${s}s` : m ? `${m}m${s}s` : `${s}s`;
  }
  function clock(iso) {
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour12: false });
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function field(li, name, text) {
    const f = li.querySelector(`[data-f="${name}"]`);
    if (f && f.textContent !== text) f.textContent = text;
    return f;
  }

  // fillUnit writes a node into its unit of the drawing (the markup is the
  // server's, from the template it sent with the page).
  function fillUnit(li, u) {
    li.className = 'unit p-' + phaseClass(u) + (u.management ? ' mgmt' : '') + (note(u) ? ' warn' : '') + (u.primary_mac === st.sel ? ' sel' : '');
    li.id = unitID(u.primary_mac);
    li.dataset.mac = u.primary_mac;
    li.dataset.since = u.phase_since || '';
    li.title = note(u);
    li.querySelector('a').href = '/node/' + u.primary_mac;
    field(li, 'hostname', dash(u.hostname));
    field(li, 'role', roleType(u));
    field(li, 'phase', phaseText(u));
    field(li, 'age', age(u.phase_since));
    const mgmt = u.management; // its BMC is on the public network; Racker runs there
    field(li, 'bmc', mgmt ? 'IP ' + dash(u.ip) : bmcText(u.bmc_reachable)).classList.toggle('bad', u.bmc_reachable === false);
    field(li, 'power', mgmt ? 'runs racker serve' : 'power ' + dash(u.power));
    field(li, 'boot', 'boot ' + dash(u.boot_device));
    field(li, 'os', osText(u.os));
    field(li, 'gen', 'gen ' + (u.install_generation || 0));
  }

  // rebuild draws the cabinets anew when the set of machines changed (the
  // plan was reloaded), with the server's layout: 42 units a cabinet, one
  // short cabinet for a small rack, filled from the top.
  function rebuild(units) {
    const rack = $('rack'), tpl = $('unit-tpl').content.querySelector('li');
    rack.textContent = '';
    const cabs = Math.max(1, Math.ceil(units.length / PER_CABINET));
    for (let c = 0; c < cabs; c++) {
      const height = cabs > 1 ? PER_CABINET : Math.max(units.length, MIN_UNITS);
      const ol = el('ol', 'cabinet');
      ol.reversed = true;
      for (let i = 0; i < height; i++) {
        const u = units[c * PER_CABINET + i];
        const li = u ? tpl.cloneNode(true) : el('li', 'blank');
        li.dataset.u = String(height - i);
        if (u) fillUnit(li, u);
        ol.append(li);
      }
      rack.append(ol);
    }
  }

  function applyRack(r) {
    st.rack = r;
    st.skew = Date.parse(r.now) - Date.now();
    st.updates++;
    document.documentElement.dataset.updates = String(st.updates);
    if (st.updates === 1) document.documentElement.dataset.firstUpdateMs = performance.now().toFixed(1);
    $('cluster').textContent = r.cluster || '';
    $('progress').value = r.percent;
    $('progress').textContent = r.percent + '%';
    $('done').textContent = `${r.done} of ${r.servers - r.left} servers provisioned (${r.percent}%)`;
    const chips = $('phases');
    chips.textContent = '';
    for (const p of r.phases || []) {
      const li = el('li', 'chip p-' + p.phase, p.phase + ' ');
      li.append(el('b', '', String(p.count)));
      chips.append(li);
    }
    const units = r.units || [];
    const drawn = [...document.querySelectorAll('#rack .unit')].map((li) => li.dataset.mac);
    if (drawn.join() !== units.map((u) => u.primary_mac).join()) {
      rebuild(units);
    } else {
      for (const u of units) fillUnit($(unitID(u.primary_mac)), u);
    }
    const hosts = {};
    st.owner = {};
    for (const u of units) {
      hosts[u.primary_mac] = u.hostname || u.primary_mac;
      st.owner[u.primary_mac] = u.primary_mac;
      if (u.bmc_mac) {
        hosts[u.bmc_mac] = hosts[u.primary_mac] + ' BMC';
        st.owner[u.bmc_mac] = u.primary_mac;
      }
    }
    if (JSON.stringify(hosts) !== JSON.stringify(st.hosts)) {
      st.hosts = hosts;
      const sel = $('filter'), keep = sel.value;
      sel.length = 1;
      for (const u of units) sel.add(new Option(hosts[u.primary_mac], u.primary_mac));
      filterEvents();
      sel.value = keep;
    }
    if (st.sel) loadDetail();
  }

  function eventItem(e, withHost) {
    const li = el('li');
    li.dataset.mac = e.mac || '';
    li.dataset.node = st.owner[e.mac] || e.mac || '';
    li.append(el('span', '', clock(e.time)));
    li.append(el('span', 'k k-' + e.kind, (withHost ? (st.hosts[e.mac] || e.mac || '?') + ' ' : '') + e.kind));
    li.append(el('span', 'm', e.message || ''));
    return li;
  }

  function addEvents(evs) {
    const list = $('events'), f = $('filter').value;
    for (const e of evs) {
      if (e.seq <= st.lastSeq) continue;
      st.lastSeq = e.seq;
      const li = eventItem(e, true);
      li.hidden = f !== '' && li.dataset.node !== f;
      list.prepend(li);
      if (st.sel && li.dataset.node === st.sel) loadDetail();
    }
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function filterEvents() {
    const f = $('filter').value;
    for (const li of $('events').children) {
      li.dataset.node = st.owner[li.dataset.mac] || li.dataset.mac;
      li.hidden = f !== '' && li.dataset.node !== f;
    }
  }

  // The node's panel: what it is, why it failed, its transitions, its
  // console tail (or, without a recorded console, its events), refreshed
  // while it is open.
  function select(mac) {
    st.sel = mac;
    // The address names the open node (#node=MAC), so it can be shared.
    history.replaceState(null, '', mac ? '#node=' + mac : location.pathname);
    for (const li of document.querySelectorAll('#rack .unit')) li.classList.toggle('sel', li.dataset.mac === mac);
    $('detail').hidden = !mac;
    clearInterval(st.detailTimer);
    if (mac) {
      $('d-host').textContent = st.hosts[mac] || mac;
      loadDetail();
      st.detailTimer = setInterval(loadDetail, 2000);
    }
  }

  async function loadDetail() {
    if (st.loading) { st.again = true; return; }
    const mac = st.sel;
    if (!mac) return;
    st.loading = true;
    try {
      const res = await fetch('/api/nodes/' + encodeURIComponent(mac), { cache: 'no-store' });
      if (res.ok && st.sel === mac) renderDetail(await res.json());
    } catch (e) {
      // the stream's indicator says the server is gone; the next tick retries
    } finally {
      st.loading = false;
      if (st.again) { st.again = false; loadDetail(); }
    }
  }

  function renderDetail(d) {
    const u = d.unit;
    $('d-host').textContent = dash(u.hostname);
    const reason = note(u);
    $('d-reason').hidden = !reason;
    $('d-reason').textContent = reason;
    const facts = [
      ['primary MAC', u.primary_mac], ['role, type', roleType(u)],
      ['phase', phaseText(u) + (u.phase_since ? ' for ' + age(u.phase_since) : '')],
      ['BMC', bmcText(u.bmc_reachable)], ['power, boot', dash(u.power) + ', ' + dash(u.boot_device)],
      ['OS, generation', dash(u.os) + ', ' + (u.install_generation || 0)], ['IP', dash(u.ip)],
      ['failures', String(u.failures || 0)], ['last error', dash(u.last_error)], ['last event', dash(u.last_event)],
    ];
    const dl = $('d-facts');
    dl.textContent = '';
    for (const [k, v] of facts) { dl.append(el('dt', '', k)); dl.append(el('dd', '', v)); }
    const tb = $('d-trans');
    tb.textContent = '';
    for (const t of d.transitions || []) {
      const tr = el('tr');
      for (const v of [clock(t.time), t.from, t.to, t.cause]) tr.append(el('td', '', v || ''));
      tb.append(tr);
    }
    if (!tb.children.length) {
      const td = el('td', '', 'no transitions logged');
      td.colSpan = 4;
      const tr = el('tr');
      tr.append(td);
      tb.append(tr);
    }
    const pre = $('d-console'), evs = d.events || [];
    // A tail reads from its end: keep it there unless the reader scrolled up.
    const atEnd = st.shown !== u.primary_mac || pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    st.shown = u.primary_mac;
    if (d.console) {
      $('d-cnote').textContent = `${d.console.file.split('/').pop()}, ${d.console.size} bytes, updated ${clock(d.console.updated)}`;
      pre.textContent = d.console.tail;
    } else {
      $('d-cnote').textContent = 'No console recorded for this node; its boot-services events instead:';
      pre.textContent = evs.map((e) => `${clock(e.time)} ${e.kind} ${e.message || ''}`).join('\n');
    }
    if (atEnd) pre.scrollTop = pre.scrollHeight;
    const ol = $('d-events');
    ol.textContent = '';
    for (const e of evs.slice().reverse()) ol.append(eventItem(e, false));
    $('detail').dataset.loaded = u.primary_mac;
  }

  function tick() {
    for (const li of document.querySelectorAll('#rack .unit[data-since]')) field(li, 'age', age(li.dataset.since));
  }

  function connect() {
    const es = new EventSource('/api/stream');
    const live = (on) => {
      $('live').textContent = on ? 'live' : 'reconnecting…';
      $('live').classList.toggle('on', on);
      document.documentElement.dataset.live = on ? '1' : '0';
    };
    es.addEventListener('rack', (e) => applyRack(JSON.parse(e.data)));
    es.addEventListener('ev', (e) => addEvents(JSON.parse(e.data) || []));
    es.onopen = () => live(true);
    es.onerror = () => live(false); // EventSource reconnects by itself
  }

  document.addEventListener('DOMContentLoaded', () => {
    for (const li of document.querySelectorAll('#rack .unit')) st.hosts[li.dataset.mac] = li.querySelector('[data-f="hostname"]').textContent;
    $('rack').addEventListener('click', (e) => {
      const li = e.target.closest('.unit');
      if (!li || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      select(li.dataset.mac === st.sel ? '' : li.dataset.mac);
    });
    $('d-close').addEventListener('click', () => select(''));
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') select(''); });
    $('filter').addEventListener('change', filterEvents);
    setInterval(tick, 1000);
    connect();
    const m = /^#node=([0-9a-fA-F:]{17})$/.exec(location.hash);
    if (m && $(unitID(m[1].toLowerCase()))) select(m[1].toLowerCase());
  });
})();
