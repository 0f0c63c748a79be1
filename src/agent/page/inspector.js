// The agent's inspector page (issue 20): the list of exchanges with live updates (the SSE
// stream), filters, detail, replay (as it was or edited), the diff of a replay, HAR export and
// import. Plain JS, no dependencies. Every value from the traffic goes through textContent
// (never parsed as markup): requests come from the internet.
'use strict';

(() => {
  const ROW = 22;          // px, as .row in inspector.css
  const MAX_ENTRIES = 10000;
  const HEX_LIMIT = 64 * 1024;
  const API = '/api/requests/http';

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  let entries = [];        // summaries, newest first, filtered
  const selected = new Set();
  let current = -1;        // index into entries
  let shownId = null;      // the entry in the detail pane
  let filterQuery = '';
  let refetchTimer = null;
  let loading = false;     // a list request is out: events wait in `buffered`
  let buffered = [];

  // --- helpers ---------------------------------------------------------------------------
  const ms = (ns) => (ns === null || ns === undefined) ? '' :
    (ns >= 1e9 ? (ns / 1e9).toFixed(2) + ' s' : (ns / 1e6).toFixed(ns < 1e7 ? 2 : 0) + ' ms');
  const bytes = (n) => n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' :
    (n / 1048576).toFixed(1) + ' MiB';
  const sizeOf = (e) => (e.request && e.request.body ? e.request.body.size : 0) +
    (e.response && e.response.body ? e.response.body.size : 0);
  const b64bytes = (s) => {
    const bin = atob(s || '');
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  };
  const hexdump = (data) => {
    const lines = [];
    const n = Math.min(data.length, HEX_LIMIT);
    for (let off = 0; off < n; off += 16) {
      let hex = '';
      let asc = '';
      for (let i = off; i < off + 16; i++) {
        if (i < n) {
          hex += data[i].toString(16).padStart(2, '0') + ' ';
          asc += data[i] >= 32 && data[i] < 127 ? String.fromCharCode(data[i]) : '.';
        } else {
          hex += '   ';
        }
      }
      lines.push(off.toString(16).padStart(8, '0') + '  ' + hex + ' ' + asc);
    }
    if (data.length > n) lines.push('... ' + (data.length - n) + ' more bytes (export the HAR for all)');
    return lines.join('\n');
  };
  const pretty = (kind, text) => {
    try {
      if (kind === 'json') return JSON.stringify(JSON.parse(text), null, 2);
      if (kind === 'form') {
        return text.split('&').map((p) => {
          const [k, v = ''] = p.split('=');
          const dec = (s) => { try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch (_) { return s; } };
          return dec(k) + ' = ' + dec(v);
        }).join('\n');
      }
      if (kind === 'xml') return text.replace(/>\s*</g, '>\n<');
    } catch (_) { /* shown as it is */ }
    return text;
  };

  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.body = body;
      init.headers['Content-Type'] = 'application/json';
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (!r.ok) throw new Error((data && data.msg) || (r.status + ' ' + r.statusText));
    return data;
  }

  function setStatus(text, cls) {
    const s = $('status');
    s.textContent = text;
    s.className = cls || '';
  }

  // --- filters ---------------------------------------------------------------------------
  function readFilters() {
    const params = new URLSearchParams();
    for (const input of $('filters').querySelectorAll('input')) {
      const v = input.value.trim();
      if (v) params.set(input.name, v);
    }
    return params;
  }

  // Whether a summary (from the stream) passes the filters; the header filter needs the
  // server (summaries have no headers): null then.
  function passes(e, params) {
    if (params.has('header')) return null;
    const req = e.request || {};
    const path = params.get('path');
    if (path && !(req.uri || '').includes(path)) return false;
    const method = params.get('method');
    if (method && (req.method || '').toUpperCase() !== method.toUpperCase()) return false;
    const status = params.get('status');
    if (status) {
      const code = e.response ? e.response.status_code : 0;
      const cls = /^([1-5])(xx)?$/i.exec(status);
      if (cls ? Math.floor(code / 100) !== Number(cls[1]) : String(code) !== status) return false;
    }
    const d = e.duration / 1e6;
    if (params.has('min_duration_ms') && d < Number(params.get('min_duration_ms'))) return false;
    if (params.has('max_duration_ms') && d > Number(params.get('max_duration_ms'))) return false;
    const size = sizeOf(e);
    if (params.has('min_size') && size < Number(params.get('min_size'))) return false;
    if (params.has('max_size') && size > Number(params.get('max_size'))) return false;
    return true;
  }

  async function load() {
    const params = readFilters();
    filterQuery = params.toString();
    params.set('summary', 'true');
    params.set('limit', String(MAX_ENTRIES));
    loading = true;
    try {
      const data = await api('GET', API + '?' + params.toString());
      const keep = current >= 0 && entries[current] ? entries[current].id : null;
      entries = data.requests;
      current = keep ? entries.findIndex((e) => e.id === keep) : -1;
      $('f-path').setCustomValidity('');
      render();
    } catch (err) {
      $('count').textContent = String(err.message);
    } finally {
      loading = false;
      const late = buffered;
      buffered = [];
      for (const e of late) add(e);
    }
  }

  function scheduleLoad(delay) {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(load, delay);
  }

  // --- the list (only the visible rows are in the DOM) -------------------------------------
  const rows = new Map();  // index -> element, the rendered ones

  function rowFor(e) {
    const r = el('div', 'row');
    r.setAttribute('role', 'option');
    r.dataset.id = e.id;
    const t = new Date(e.start);
    r.append(el('span', 'sel'), el('span', 'time', isNaN(t) ? '' : t.toLocaleTimeString()),
      el('span', 'method', e.request ? e.request.method : '?'),
      el('span', 'path', e.request ? e.request.uri : (e.error || '')));
    const code = e.response ? e.response.status_code : 0;
    r.append(el('span', 'code ' + (code ? 's' + Math.floor(code / 100) : 'err'), code || 'err'),
      el('span', 'dur', ms(e.duration)), el('span', 'size', bytes(sizeOf(e))));
    if (e.replay_of) r.classList.add('replay');
    if (e.error) r.title = e.error;
    return r;
  }

  function render() {
    const list = $('list');
    $('list-spacer').style.height = (entries.length * ROW) + 'px';
    const first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5);
    const last = Math.min(entries.length, Math.ceil((list.scrollTop + list.clientHeight) / ROW) + 5);
    for (const [i, r] of rows) {
      if (i < first || i >= last || r.dataset.id !== (entries[i] && entries[i].id)) {
        r.remove();
        rows.delete(i);
      }
    }
    for (let i = first; i < last; i++) {
      let r = rows.get(i);
      if (!r) {
        r = rowFor(entries[i]);
        r.style.top = (i * ROW) + 'px';
        list.append(r);
        rows.set(i, r);
      }
      r.classList.toggle('current', i === current);
      r.classList.toggle('selected', selected.has(entries[i].id));
    }
    $('count').textContent = entries.length + (filterQuery ? ' matching' : '') + ' request' +
      (entries.length === 1 ? '' : 's');
    const btn = $('export-selected');
    btn.textContent = 'Export selected (' + selected.size + ')';
    btn.disabled = selected.size === 0;
  }

  function rerenderAll() {
    for (const r of rows.values()) r.remove();
    rows.clear();
    render();
  }

  function move(to) {
    if (entries.length === 0) return;
    current = Math.max(0, Math.min(entries.length - 1, to));
    const list = $('list');
    const top = current * ROW;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (top + ROW > list.scrollTop + list.clientHeight) list.scrollTop = top + ROW - list.clientHeight;
    render();
  }

  function add(e) {
    if (loading) { buffered.push(e); return; }
    if (entries.some((x) => x.id === e.id)) return;
    const params = new URLSearchParams(filterQuery);
    const ok = passes(e, params);
    if (ok === null) { scheduleLoad(300); return; }
    if (!ok) return;
    entries.unshift(e);
    if (entries.length > MAX_ENTRIES) entries.pop();
    if (current >= 0) current++;
    const list = $('list');
    if (list.scrollTop > 0) list.scrollTop += ROW;  // keep what the user looks at in place
    rerenderAll();
  }

  // --- detail ----------------------------------------------------------------------------
  function headersTable(headers) {
    const t = el('table');
    for (const name of Object.keys(headers || {})) {
      for (const v of headers[name]) {
        const tr = el('tr');
        const td = el('td', v === '[redacted]' ? 'redacted' : '', v);
        tr.append(el('td', '', name), td);
        t.append(tr);
      }
    }
    return t;
  }

  function bodyView(body) {
    const box = el('div');
    if (!body) return box;
    const notes = [bytes(body.size) + ' on the wire'];
    if (body.truncated) notes.push('cut at the body cap: ' + bytes(body.captured) + ' kept');
    if (body.content_encoding) notes.push('Content-Encoding: ' + body.content_encoding);
    if (body.decoded) {
      notes.push('decoded ' + bytes(body.decoded.size) + (body.decoded.truncated ? ' (cut)' : '') +
        (body.decoded.incomplete ? ' (incomplete)' : ''));
    }
    if (body.decode_error) notes.push('not decoded: ' + body.decode_error);
    box.append(el('div', body.truncated || body.decode_error ? 'note' : '', notes.join(' · ')));
    if (body.size === 0 && !body.base64) return box;
    let text;
    if (body.kind === 'binary') {
      text = hexdump(b64bytes(body.decoded ? body.decoded.base64 : body.base64));
    } else {
      text = body.pretty ? pretty(body.kind, body.text || '') : (body.text || '');
    }
    if (text) box.append(el('pre', 'body ' + (body.kind || ''), text));
    return box;
  }

  function timing(e) {
    const box = el('div');
    const total = e.timing ? e.timing.total : e.duration;
    let head = e.timing ? e.timing.to_app_head : null;
    if (head !== null && head !== undefined) head = Math.min(head, total);  // imported HARs
    box.append(el('div', '', 'total ' + ms(total) + (head !== null && head !== undefined ?
      ' = app\'s first response head after ' + ms(head) + ' + the rest ' + ms(total - head) : '')));
    if (total > 0 && head !== null && head !== undefined) {
      const bar = el('div', 'timing');
      const a = el('div', 'app');
      a.style.width = (100 * head / total) + '%';
      const b = el('div', 'rest');
      b.style.width = (100 * (total - head) / total) + '%';
      bar.append(a, b);
      box.append(bar);
    }
    box.append(el('div', 'note', 'the time from the client to the agent is not seen by the agent'));
    return box;
  }

  function framesView(frames) {
    const t = el('table', 'frames');
    for (const f of frames) {
      const tr = el('tr');
      const payload = f.text !== undefined ? f.text : hexdump(b64bytes(f.base64 || ''));
      tr.append(el('td', '', f.direction === 'to_app' ? '\u2192 app' : '\u2190 app'),
        el('td', '', f.opcode_name || f.opcode), el('td', '', bytes(f.size) + (f.truncated ? ' (cut)' : '')),
        el('td', '', ms(f.time)), el('td', '', payload));
      t.append(tr);
    }
    return t;
  }

  async function show(id) {
    shownId = id;
    const d = $('detail');
    let e;
    try {
      e = await api('GET', API + '/' + encodeURIComponent(id));
    } catch (err) {
      d.replaceChildren(el('p', 'err', err.message));
      return;
    }
    if (shownId !== id) return;
    const req = e.request || {};
    const res = e.response;
    const parts = [];
    parts.push(el('h2', '', (req.method || '?') + ' ' + (req.uri || '') + ' \u2192 ' +
      (res ? res.status : 'no response')));
    const meta = el('table');
    const metaRow = (k, v) => { const tr = el('tr'); tr.append(el('td', '', k), el('td', '', v)); meta.append(tr); };
    metaRow('id', e.id);
    metaRow('tunnel', e.tunnel_name);
    metaRow('local app', e.local);
    metaRow('client', e.remote_addr);
    metaRow('start', e.start);
    parts.push(meta);
    if (e.replay_of) {
      const p = el('p', '', 'replay of ');
      const a = el('a', 'link', e.replay_of);
      a.id = 'replay-of';
      a.addEventListener('click', () => select(e.replay_of));
      p.append(a);
      parts.push(p);
    }
    if (e.error) parts.push(el('p', 'err', e.error));
    const actions = el('div', 'actions');
    const replayBtn = el('button', '', 'Replay (r)');
    replayBtn.id = 'replay';
    replayBtn.addEventListener('click', () => replay(e.id));
    const editBtn = el('button', '', 'Edit and replay (e)');
    editBtn.id = 'edit';
    editBtn.addEventListener('click', () => editForm(e));
    const harLink = el('a', 'link', 'HAR');
    harLink.href = API + '.har?ids=' + encodeURIComponent(e.id);
    harLink.download = e.id + '.har';
    actions.append(replayBtn, editBtn, harLink);
    parts.push(actions);
    parts.push(el('h3', '', 'Timing'), timing(e));
    parts.push(el('h3', '', 'Request (' + (req.proto || '') + ')'), headersTable(req.headers), bodyView(req.body));
    if (res) {
      parts.push(el('h3', '', 'Response ' + res.status + ' (' + res.proto + ')'), headersTable(res.headers), bodyView(res.body));
    }
    if (e.websocket_frames) {
      parts.push(el('h3', '', 'WebSocket frames (' + e.websocket_frames.length + ')'), framesView(e.websocket_frames));
    }
    const diffBox = el('div');
    diffBox.id = 'diff';
    parts.push(diffBox);
    d.replaceChildren(...parts);
    if (e.replay_of) showDiff(e.id, diffBox);
  }

  async function showDiff(id, box) {
    let diff;
    try {
      diff = await api('GET', API + '/' + encodeURIComponent(id) + '/diff');
    } catch (err) {
      box.replaceChildren(el('h3', '', 'Diff with the original'), el('p', 'note', err.message));
      return;
    }
    const parts = [el('h3', '', 'Diff with the original ' + diff.replay_of)];
    parts.push(el('p', diff.same ? '' : 'note', diff.same ? 'same response' : 'responses differ'));
    const t = el('table');
    const row = (k, v, cls) => { const tr = el('tr'); tr.append(el('td', '', k), el('td', cls || '', v)); t.append(tr); };
    row('status', diff.status.original + ' \u2192 ' + diff.status.replay + (diff.status.same ? ' (same)' : ''));
    for (const h of diff.headers.added) row('+ ' + h.name, h.value, 'diff-plus');
    for (const h of diff.headers.removed) row('- ' + h.name, h.value, 'diff-minus');
    for (const h of diff.headers.changed) row('~ ' + h.name, h.original + ' \u2192 ' + h.replay);
    row('body', diff.body.same ? 'same (' + bytes(diff.body.original_size) + ')' :
      bytes(diff.body.original_size) + ' \u2192 ' + bytes(diff.body.replay_size) +
      (diff.body.first_difference !== null ? ', first difference at byte ' + diff.body.first_difference : '') +
      (diff.body.complete ? '' : ' (compared what was kept)'));
    parts.push(t);
    if (diff.body.lines) {
      const pre = el('pre', 'diff');
      for (const l of diff.body.lines) {
        pre.append(el('span', l.op === '-' ? 'diff-minus' : l.op === '+' ? 'diff-plus' : '', l.op + ' ' + l.line + '\n'));
      }
      parts.push(pre);
    }
    box.replaceChildren(...parts);
  }

  function select(id) {
    const i = entries.findIndex((e) => e.id === id);
    if (i >= 0) move(i);
    show(id);
  }

  async function replay(id, edits) {
    setStatus('replaying ' + id);
    try {
      const e = await api('POST', API, JSON.stringify(Object.assign({ id }, edits || {})));
      setStatus('live', 'live');
      // The stream brings the entry into the list too; open it now.
      add(e);
      select(e.id);
    } catch (err) {
      setStatus('replay failed: ' + err.message, 'down');
    }
  }

  function editForm(e) {
    const req = e.request || {};
    const form = el('form');
    form.id = 'edit-form';
    const field = (label, input) => { const l = el('label', '', label); l.htmlFor = input.id; form.append(l, input); };
    const method = el('input');
    method.id = 'edit-method';
    method.value = req.method || 'GET';
    const uri = el('input');
    uri.id = 'edit-uri';
    uri.value = req.uri || '/';
    const headers = el('textarea');
    headers.id = 'edit-headers';
    const lines = [];
    for (const name of Object.keys(req.headers || {})) {
      for (const v of req.headers[name]) lines.push(name + ': ' + v);
    }
    headers.value = lines.join('\n');
    const body = el('textarea');
    body.id = 'edit-body';
    const binary = req.body && req.body.kind === 'binary';
    body.value = binary ? '' : (req.body && req.body.text) || '';
    field('Method', method);
    field('Path', uri);
    field('Headers (Name: value, one a line; a [redacted] line left as it is keeps the original value)', headers);
    field(binary ? 'Body (binary: leave empty to send the original bytes)' : 'Body', body);
    const go = el('button', '', 'Send');
    go.type = 'submit';
    go.id = 'edit-send';
    const cancel = el('button', '', 'Cancel');
    cancel.type = 'button';
    cancel.addEventListener('click', () => show(e.id));
    const actions = el('div', 'actions');
    actions.append(go, cancel);
    form.append(actions);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const edits = {};
      if (method.value.trim() !== req.method) edits.method = method.value.trim();
      if (uri.value.trim() !== req.uri) edits.uri = uri.value.trim();
      // Send only what changed: a field left out keeps the original's value, so a redacted
      // credential is replayed as it was, not as the mask.
      const now = {};
      for (const line of headers.value.split('\n')) {
        const c = line.indexOf(':');
        if (c <= 0) continue;
        const name = line.slice(0, c).trim();
        (now[name] = now[name] || []).push(line.slice(c + 1).trim());
      }
      const was = req.headers || {};
      const hdrs = {};
      for (const name of Object.keys(was)) {
        if (!(name in now)) hdrs[name] = null;
      }
      for (const name of Object.keys(now)) {
        if (JSON.stringify(now[name]) !== JSON.stringify(was[name])) hdrs[name] = now[name];
      }
      if (Object.keys(hdrs).length) edits.headers = hdrs;
      const original = binary ? '' : (req.body && req.body.text) || '';
      if (body.value !== original) edits.body = body.value;
      replay(e.id, edits);
    });
    $('detail').replaceChildren(el('h2', '', 'Edit and replay ' + e.id), form);
    method.focus();
  }

  // --- live updates ----------------------------------------------------------------------
  function connect() {
    const source = new EventSource(API + '/stream');
    source.addEventListener('open', () => setStatus('live', 'live'));
    source.addEventListener('request', (m) => {
      try { add(JSON.parse(m.data)); } catch (_) { /* a malformed event is skipped */ }
    });
    source.addEventListener('cleared', () => {
      entries = [];
      selected.clear();
      current = -1;
      rerenderAll();
    });
    source.addEventListener('error', () => {
      setStatus('reconnecting', 'down');
      // EventSource retries on its own; the list is reloaded once it is back.
      source.addEventListener('open', () => load(), { once: true });
    });
  }

  // --- wiring ----------------------------------------------------------------------------
  function init() {
    const list = $('list');
    list.addEventListener('scroll', () => render());
    window.addEventListener('resize', () => render());
    list.addEventListener('click', (ev) => {
      const r = ev.target.closest('.row');
      if (!r) return;
      if (ev.target.classList.contains('sel') || ev.ctrlKey || ev.metaKey) {
        toggleSelected(r.dataset.id);
        return;
      }
      select(r.dataset.id);
    });
    list.addEventListener('keydown', (ev) => {
      const e = entries[current];
      switch (ev.key) {
        case 'ArrowDown': case 'j': move(current + 1); break;
        case 'ArrowUp': case 'k': move(current - 1); break;
        case 'PageDown': move(current + Math.floor(list.clientHeight / ROW)); break;
        case 'PageUp': move(current - Math.floor(list.clientHeight / ROW)); break;
        case 'Home': move(0); break;
        case 'End': move(entries.length - 1); break;
        case 'Enter': if (e) show(e.id); break;
        case 'x': case ' ': if (e) toggleSelected(e.id); break;
        case 'r': if (e) replay(e.id); break;
        case 'e': if (e) api('GET', API + '/' + encodeURIComponent(e.id)).then(editForm, () => {}); break;
        default: return;
      }
      ev.preventDefault();
    });
    document.addEventListener('keydown', (ev) => {
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (ev.key === '/' && !typing) {
        ev.preventDefault();
        $('f-path').focus();
      } else if (ev.key === 'Escape') {
        list.focus();
      }
    });
    $('filters').addEventListener('input', () => scheduleLoad(200));
    $('filters').addEventListener('reset', () => scheduleLoad(0));
    $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); load(); list.focus(); });
    $('clear').addEventListener('click', () => api('DELETE', API).catch((err) => setStatus(err.message, 'down')));
    $('export-selected').addEventListener('click', () => {
      const a = el('a');
      a.href = API + '.har?ids=' + encodeURIComponent([...selected].join(','));
      a.download = 'tunnel-agent-selection.har';
      document.body.append(a);
      a.click();
      a.remove();
    });
    $('import-file').addEventListener('change', async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      try {
        const r = await fetch(API + '/import', { method: 'POST', body: await file.text() });
        const data = await r.json();
        if (!r.ok) throw new Error(data.msg);
        setStatus('imported ' + data.imported, 'live');
        load();
      } catch (err) {
        setStatus('import failed: ' + err.message, 'down');
      }
      ev.target.value = '';
    });
    connect();
    load();
    list.focus();
  }

  function toggleSelected(id) {
    if (selected.has(id)) selected.delete(id); else selected.add(id);
    render();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
