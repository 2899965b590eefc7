// hsmctl console: renders the snapshots hsmctl console pushes on
// /api/events (docs/console.md). Every view is the document an hsmctl
// command prints with --json. The access token comes from this page's URL
// and goes only in the Authorization header of requests to this server.
// Every value from the fleet is put in the page as text (textContent),
// never as markup.
(function () {
  'use strict';

  const token = new URLSearchParams(window.location.search).get('token') || '';
  const authHeaders = { Authorization: 'Bearer ' + token };

  // ---- small DOM helpers --------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k.startsWith('data-') || k === 'title' || k === 'id') node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function table(headers, rows, id) {
    const head = el('tr', {}, ...headers.map((h) => el('th', {}, h)));
    return el('table', { id: id }, el('thead', {}, head), el('tbody', {}, ...rows));
  }

  function errorBox(doc) {
    const e = (doc && doc.error) || {};
    return el('div', { class: 'error' },
      (e.reason || 'ERROR') + ': ' + (e.message || 'no answer'));
  }

  function shortVp(vp) {
    return vp ? vp.slice(0, 16) : '-';
  }

  function fill(id, ...nodes) {
    const view = document.getElementById(id);
    view.replaceChildren(...nodes);
  }

  // differsFlags returns, per unit name, whether its value of `key` differs
  // from the value most units have.
  function differsFlags(units, key) {
    const counts = new Map();
    for (const u of units) counts.set(key(u), (counts.get(key(u)) || 0) + 1);
    let common = null;
    let best = -1;
    for (const [v, n] of counts) if (n > best) { best = n; common = v; }
    const flags = new Map();
    for (const u of units) flags.set(u.unit, counts.size > 1 && key(u) !== common);
    return flags;
  }

  // ---- views --------------------------------------------------------------

  function renderUnits(fleet, status) {
    if (!fleet || fleet.units === undefined) return fill('view-units', errorBox(fleet));
    const info = new Map();
    for (const u of (status && status.units) || []) info.set(u.unit, u);
    const rows = fleet.units.map((u) => {
      const s = info.get(u.unit) || {};
      const reach = u.state || (u.ok ? 'running' : 'unreachable');
      return el('tr', { 'data-unit': u.unit },
        el('td', { class: 'col-name' }, u.unit),
        el('td', { class: 'col-unit-id mono', title: s.unit_id }, s.unit_id ? s.unit_id.slice(0, 16) : '-'),
        el('td', { class: 'col-instance' }, s.instance || '-'),
        el('td', { class: 'col-mode' }, s.mode || '-'),
        el('td', { class: 'col-firmware' }, s.firmware_version || '-'),
        el('td', { class: 'col-endpoint mono' }, u.endpoint),
        el('td', { class: 'col-state' + (reach === 'unreachable' ? ' bad' : '') },
          reach + (u.error ? ' (' + u.error.reason + ')' : '')),
        el('td', { class: 'col-selected' }, u.selected ? 'selected' : 'not selected'),
        el('td', { class: 'col-action' }, selectButton(u.unit, !u.selected)));
    });
    fill('view-units', table(
      ['Name', 'Unit id', 'Instance', 'Mode', 'Firmware', 'Endpoint', 'Reachability', 'Selection',
        'Action'], rows, 'units-table'));
  }

  // selectButton does what hsmctl unit add NAME (`select`) or unit rm NAME
  // does; the page shows the result when the next snapshot arrives. The
  // vendor console calls taking a unit out "Remove crypto units"; hsmctl
  // has no command that deletes a unit from fleet.json, so Remove is
  // unit rm: out of the selection, still running, still in fleet.json.
  function selectButton(unit, select) {
    const button = el('button', {
      class: 'select-unit', 'data-unit': unit,
      title: select ? 'Put ' + unit + ' back in the selection (hsmctl unit add ' + unit + ')'
        : 'Take ' + unit + ' out of the selection (hsmctl unit rm ' + unit + '): it keeps ' +
          'running and stays in fleet.json; commands no longer reach it',
    }, select ? 'Select' : 'Remove crypto unit');
    button.type = 'button';
    button.addEventListener('click', () => postAction('/api/units/select',
      { units: [unit], selected: select },
      (select ? 'unit add ' : 'unit rm ') + unit));
    return button;
  }

  async function postAction(path, body, what) {
    const out = document.getElementById('action-result');
    out.className = 'action-result';
    out.textContent = what + ': …';
    try {
      const res = await fetch(path, {
        method: 'POST', cache: 'no-store',
        headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders),
        body: JSON.stringify(body),
      });
      const doc = await res.json();
      if (res.ok && doc.ok) {
        out.textContent = what + ': ok';
      } else {
        const e = doc.error || {};
        out.className = 'action-result error';
        out.textContent = what + ': FAILED: ' + (e.reason || 'HTTP ' + res.status) + ': ' +
          (e.message || doc.message || '');
      }
    } catch (err) {
      out.className = 'action-result error';
      out.textContent = what + ': FAILED: ' + err;
    }
  }

  function adminList(u) {
    return (u.administrators || []).map((a) => a.name + ' [' + a.key_id.slice(0, 16) + ']')
      .sort().join(', ');
  }

  function renderAdmins(status) {
    if (!status || status.units === undefined) return fill('view-admins', errorBox(status));
    const answered = status.units.filter((u) => u.ok);
    const adminsDiffer = differsFlags(answered, adminList);
    const sigDiffer = differsFlags(answered, (u) => u.signature_threshold);
    const revDiffer = differsFlags(answered, (u) => u.revocation_threshold);
    const rows = status.units.map((u) => {
      if (!u.ok) {
        return el('tr', { 'data-unit': u.unit }, el('td', {}, u.unit),
          el('td', { class: 'bad' }, u.error.reason + ': ' + u.error.message),
          el('td', {}), el('td', {}));
      }
      return el('tr', { 'data-unit': u.unit },
        el('td', { class: 'col-name' }, u.unit),
        el('td', { class: 'col-admins' + (adminsDiffer.get(u.unit) ? ' differs' : '') },
          adminList(u) || '(none)'),
        el('td', { class: 'col-signature' + (sigDiffer.get(u.unit) ? ' differs' : '') },
          u.signature_threshold),
        el('td', { class: 'col-revocation' + (revDiffer.get(u.unit) ? ' differs' : '') },
          u.revocation_threshold));
    });
    fill('view-admins', table(['Unit', 'Administrators', 'Signature threshold',
      'Revocation threshold'], rows, 'admins-table'));
  }

  function registerCell(name, reg, differs) {
    const parts = name === 'new' && reg.state === 'PARTIALLY_LOADED'
      ? ' (' + reg.parts_loaded + '/' + reg.parts_total + ' parts)' : '';
    return el('td', { class: 'reg-' + name + (differs ? ' differs' : ''),
      'data-state': reg.state, 'data-vp': reg.verification_pattern },
      el('span', { class: 'state' }, reg.state + parts), ' ',
      el('span', { class: 'vp', title: reg.verification_pattern || '' },
        shortVp(reg.verification_pattern)));
  }

  function renderMasterKeys(status) {
    if (!status || status.units === undefined) return fill('view-master-keys', errorBox(status));
    const answered = status.units.filter((u) => u.ok);
    const differ = {};
    for (const r of ['new', 'current', 'old']) {
      differ[r] = differsFlags(answered,
        (u) => u.registers[r].state + ' ' + u.registers[r].verification_pattern);
    }
    const rows = status.units.map((u) => {
      if (!u.ok) {
        return el('tr', { 'data-unit': u.unit }, el('td', { class: 'col-name' }, u.unit),
          el('td', { class: 'bad' }, u.error.reason + ': ' + u.error.message), el('td', {}), el('td', {}));
      }
      return el('tr', { 'data-unit': u.unit }, el('td', { class: 'col-name' }, u.unit),
        ...['new', 'current', 'old'].map((r) => registerCell(r, u.registers[r], differ[r].get(u.unit))));
    });
    fill('view-master-keys', table(['Unit', 'NEW', 'CURRENT', 'OLD'], rows, 'master-keys-table'));
  }

  function definitions(id, pairs) {
    const dl = el('dl', { id: id });
    for (const [k, v, cls] of pairs) {
      if (v === undefined) continue;
      dl.append(el('dt', {}, k), el('dd', { class: cls || null }, v === null ? '-' : v));
    }
    return dl;
  }

  function seconds(s) {
    if (s === null || s === undefined) return '-';
    if (s < 60) return s + ' s';
    return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  }

  function renderRotation(rot, progress) {
    if (!rot || rot.ok === false) {
      document.getElementById('rotation-form').hidden = true;
      return fill('view-rotation', errorBox(rot));
    }
    const live = progress && progress.phase && progress.phase !== 'NONE' &&
      rot.journal_phase === progress.phase ? progress : null;
    const holder = rot.lock_holder;
    const nodes = [definitions('rotation-facts', [
      ['Journal phase', rot.journal_phase, 'state journal-phase'],
      ['Keys re-encrypted', rot.keys_total !== undefined
        ? rot.keys_done + ' of ' + rot.keys_total : undefined, 'keys-done'],
      ['From (source VP)', rot.source_vp !== undefined ? shortVp(rot.source_vp) : undefined, 'vp'],
      ['To (target VP)', rot.target_vp !== undefined ? shortVp(rot.target_vp) : undefined, 'vp'],
      ['Keys/s', live && live.keys_per_second !== null ? live.keys_per_second : undefined,
        'keys-per-second'],
      ['ETA', live && rot.journal_phase === 'REENCRYPTING' ? seconds(live.eta_seconds) : undefined,
        'eta'],
      ['Started', rot.started_at],
      ['Last update', rot.updated_at],
      ['Rotation lock', holder ? 'held by ' + holder.command + ' (pid ' + holder.pid + ' on ' +
        holder.host + ', since ' + holder.started_at + ')' : 'free (no rotation is running)'],
      ['Last error', rot.last_error ? rot.last_error.error + ' (at phase ' +
        rot.last_error.phase + ')' : null, rot.last_error ? 'bad' : null],
    ])];
    // Once every key has a pending blob under NEW, and until every unit is
    // promoted, the rotation waits on set immediate: the line hsmctl mk
    // rotate prints then (host::kRewrapDoneMessage).
    if (rot.journal_phase === 'REENCRYPTED' || rot.journal_phase === 'PROMOTING') {
      nodes.push(el('p', { class: 'rewrap-done', id: 'rewrap-done' },
        'KMS CRK rewrap successful, waiting on cryptounit-mk-setimm.'));
    }
    if (live && live.keys_per_unit && Object.keys(live.keys_per_unit).length) {
      nodes.push(el('h3', {}, 'Keys re-encrypted per unit in this run'),
        table(['Unit', 'Keys'], Object.entries(live.keys_per_unit).sort().map(([u, n]) =>
          el('tr', { 'data-unit': u }, el('td', {}, u), el('td', { class: 'unit-keys' }, n))),
        'rotation-units'));
    }
    if (rot.keys_total) {
      const bar = el('progress', { id: 'rotation-progress' });
      bar.max = rot.keys_total;
      bar.value = rot.keys_done;
      nodes.push(el('p', {}, bar));
    }
    fill('view-rotation', ...nodes);
    // Abort (mk rotate --abort) only while a rotation is open; the command
    // itself refuses one a unit has promoted (ROTATION_PROMOTED).
    document.getElementById('rotation-form').hidden =
      !rot.journal_phase || rot.journal_phase === 'NONE';
  }

  function renderRecovery(rec) {
    if (!rec || rec.situation === undefined) return fill('view-recovery', errorBox(rec));
    const list = (xs) => (xs && xs.length ? xs.join(', ') : null);
    fill('view-recovery',
      el('p', { class: 'situation', id: 'recovery-situation' }, rec.situation),
      definitions('recovery-facts', [
        ['Why', rec.observed, 'recovery-observed'],
        ['Safe action', rec.action, 'recovery-action'],
        ['Journal phase', rec.journal_phase],
        ['Units promoted', list(rec.units_promoted)],
        ['Units to set immediate', list(rec.units_to_promote)],
        ['Units to reload NEW', list(rec.units_to_reload)],
        ['Abort possible', rec.abort_possible ? 'yes (mk rotate --abort)' : 'no'],
        ['Unreadable keys', rec.unreadable_count || 0],
        ['Quarantined keys', rec.quarantined_count || 0],
      ]),
      table(['WKID', 'Pending WKID', 'Keys'], (rec.keys_per_wkid || []).map((c) =>
        el('tr', {}, el('td', { class: 'mono' }, c.wkid || '-'),
          el('td', { class: 'mono' }, c.pending_wkid || '-'), el('td', {}, c.keys))),
        'keys-per-wkid'));
  }

  // throughputChart draws keys re-encrypted against time of the last
  // rotation (samples [seconds, keys done]) as an inline SVG: no library,
  // nothing fetched.
  function throughputChart(samples, total) {
    const ns = document.getElementById('svg-namespace').namespaceURI;
    const W = 640, H = 220, L = 90, B = 30, T = 10, R = 10;
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('id', 'throughput-chart');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('role', 'img');
    const add = (tag, attrs, text) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      svg.append(n);
      return n;
    };
    const tMax = Math.max(samples[samples.length - 1][0], 0.1);
    const kMax = Math.max(total || 0, ...samples.map((p) => p[1]), 1);
    const x = (t) => L + (W - L - R) * t / tMax;
    const y = (k) => H - B - (H - B - T) * k / kMax;
    add('rect', { x: L, y: T, width: W - L - R, height: H - B - T, fill: '#fff', stroke: '#d5dae2' });
    add('polyline', { points: samples.map((p) => x(p[0]) + ',' + y(p[1])).join(' '),
      fill: 'none', stroke: '#1f5fa8', 'stroke-width': 2, class: 'throughput-line' });
    for (const p of samples) add('circle', { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: '#1f5fa8' });
    add('text', { x: L - 6, y: T + 10, 'text-anchor': 'end', 'font-size': 11 }, kMax + ' keys');
    add('text', { x: L - 6, y: H - B, 'text-anchor': 'end', 'font-size': 11 }, '0');
    add('text', { x: W - R, y: H - 8, 'text-anchor': 'end', 'font-size': 11 }, tMax + ' s');
    add('text', { x: L, y: H - 8, 'font-size': 11 }, '0 s');
    return svg;
  }

  function renderKeys(rec, progress) {
    const nodes = [];
    if (rec && rec.keys_per_wkid) {
      nodes.push(table(['WKID', 'Pending WKID', 'Keys'], rec.keys_per_wkid.map((c) =>
        el('tr', {}, el('td', { class: 'mono' }, c.wkid || '-'),
          el('td', { class: 'mono' }, c.pending_wkid || '-'), el('td', {}, c.keys))),
      'keys-table'));
    } else {
      nodes.push(errorBox(rec));
    }
    if (progress && progress.samples && progress.samples.length) {
      const done = progress.samples[progress.samples.length - 1];
      nodes.push(el('h3', {}, 'Last rotation: keys re-encrypted over time'),
        el('p', { class: 'hint', id: 'throughput-summary' },
          'from ' + shortVp(progress.rotation.source_vp) + ' to ' +
          shortVp(progress.rotation.target_vp) + ', started ' + progress.rotation.started_at +
          ': ' + done[1] + ' of ' + progress.keys_total + ' keys in ' + done[0] + ' s as the ' +
          'console saw them (it reads the journal every --poll-ms)'),
        throughputChart(progress.samples, progress.keys_total));
    } else {
      nodes.push(el('p', { class: 'hint' }, 'No rotation seen since this console started.'));
    }
    fill('view-keys', ...nodes);
  }

  function renderAudit(audit) {
    if (!audit || audit.ok === false) return fill('view-audit', errorBox(audit));
    const registers = (r) => r ? ['new', 'current', 'old'].map((k) =>
      k.toUpperCase() + ' ' + ((r[k] && r[k].state) || '-') + ' ' + shortVp(r[k] && r[k].vp)).join(', ') : '-';
    const rows = (audit.last_events || []).map((e) => el('tr', { 'data-seq': e.seq },
      el('td', { class: 'col-seq' }, e.seq),
      el('td', { class: 'col-time mono' }, e.time),
      el('td', { class: 'col-unit' }, e.unit),
      el('td', { class: 'col-command' }, e.command),
      el('td', { class: 'col-outcome' + (e.ok ? '' : ' bad') },
        e.ok ? 'ok' : (e.reason || 'FAILED') + ': ' + (e.message || '')),
      el('td', { class: 'col-signers' },
        (e.signers || []).map((s) => s.name).join(', ') || '-'),
      el('td', { class: 'col-before mono' }, registers(e.before)),
      el('td', { class: 'col-after mono' }, e.ok ? registers(e.after) : '-')));
    fill('view-audit', definitions('audit-facts', [
      ['Events', audit.events],
      ['Head of the hash chain', audit.head, 'mono'],
    ]), el('h3', {}, 'Last ' + rows.length + ' event(s), newest first'),
    table(['#', 'Time (UTC)', 'Unit', 'Command', 'Outcome', 'Signed by', 'Registers before',
      'Registers after'], rows, 'audit-events'));
  }

  // ---- signed actions (Master keys and Recovery tabs) ----------------------

  // The form's rows are static page content, not part of a view: a new
  // snapshot does not wipe what is being typed.
  function fileRow(kind) {
    const file = el('input', { class: 'file' });
    file.type = 'text';
    file.placeholder = kind === 'signer' ? 'alice.key or pkcs11:token=…;object=…'
      : 'part1.kp or pkcs11:token=…;object=…';
    file.autocomplete = 'off';
    file.spellcheck = false;
    const password = el('input', { class: 'password' });
    password.type = 'password';
    password.placeholder = 'password or PIN';
    password.autocomplete = 'new-password';
    const remove = el('button', { class: 'remove-row' }, 'Remove');
    remove.type = 'button';
    const row = el('div', { class: 'file-row ' + kind }, file, password, remove);
    remove.addEventListener('click', () => row.remove());
    return row;
  }

  function collectRows(containerId) {
    const out = [];
    for (const row of document.getElementById(containerId).querySelectorAll('.file-row')) {
      const file = row.querySelector('.file').value.trim();
      if (file) out.push({ file: file, password: row.querySelector('.password').value });
    }
    return out;
  }

  function clearPasswords(form) {
    for (const input of form.querySelectorAll('input[type=password]')) input.value = '';
  }

  function showActionError(prefix, text) {
    const box = document.getElementById(prefix + '-action-status');
    box.className = 'action-status failed';
    box.replaceChildren(el('span', { class: 'outcome' }, text));
  }

  async function startAction(prefix, button) {
    const action = button.dataset.action;
    // mk rotate --abort and fleet add need no signature.
    let body = {};
    if (action === 'fleet-add') {
      body = {
        name: document.getElementById('add-unit-name').value.trim(),
        endpoint: document.getElementById('add-unit-endpoint').value.trim(),
        tls: document.getElementById('add-unit-tls').checked,
      };
    } else if (action !== 'mk-abort') {
      body.signers = collectRows(prefix + '-signers');
    }
    if (['mk-load', 'mk-commit', 'recover-apply'].includes(action)) {
      const parts = collectRows(prefix + '-parts');
      if (parts.length) body.parts = parts;
    }
    if (action === 'mk-commit') {
      const vp = document.getElementById('mk-vp').value.trim();
      if (vp) body.vp = vp;
    }
    if (action === 'mk-load') {
      const total = document.getElementById('mk-total').value;
      if (total) body.total = Number(total);
    }
    if (action === 'mk-clear') body.register = button.dataset.register;
    clearPasswords(document.getElementById(prefix + '-form'));
    try {
      const res = await fetch('/api/actions/' + action, {
        method: 'POST', cache: 'no-store',
        headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders),
        body: JSON.stringify(body),
      });
      const doc = await res.json();
      if (res.status !== 202) {
        showActionError(prefix, 'not started (HTTP ' + res.status + '): ' + (doc.message || ''));
      }
    } catch (err) {
      showActionError(prefix, 'not started: ' + err);
    }
  }

  for (const prefix of ['mk', 'recovery']) {
    document.getElementById(prefix + '-signers').append(fileRow('signer'));
    for (const button of document.querySelectorAll('#' + prefix + '-form .act')) {
      button.addEventListener('click', () => startAction(prefix, button));
    }
  }
  document.getElementById('act-mk-abort').addEventListener('click', (event) =>
    startAction('rotation', event.currentTarget));
  document.getElementById('act-fleet-add').addEventListener('click', (event) =>
    startAction('units', event.currentTarget));
  for (const button of document.querySelectorAll('.add-row')) {
    button.addEventListener('click', () =>
      document.getElementById(button.dataset.rows).append(fileRow(button.dataset.kind)));
  }

  // resultError returns "REASON: message" of a command's --json document.
  function resultError(result) {
    if (!result) return '';
    const e = result.error || (result.prechecks && result.prechecks[0] && result.prechecks[0].error);
    if (!e) return '';
    return typeof e === 'string' ? e : (e.reason || '') + ': ' + (e.message || '');
  }

  function renderAction(state) {
    for (const prefix of ['mk', 'recovery', 'rotation', 'units']) {
      const box = document.getElementById(prefix + '-action-status');
      if (!state || !state.id) {
        box.className = 'action-status';
        box.replaceChildren();
        continue;
      }
      const nodes = [el('span', { class: 'action-id' }, 'Action ' + state.id + ': '),
        el('code', { class: 'action-command' }, state.command), ' '];
      let cls = 'running';
      if (state.running) {
        nodes.push(el('span', { class: 'outcome' }, 'running since ' + state.started_at + '…'));
      } else {
        cls = state.outcome === 'ok' ? 'ok' : state.outcome === 'refused' ? 'refused' : 'failed';
        const why = resultError(state.result);
        nodes.push(el('span', { class: 'outcome', 'data-outcome': state.outcome },
          (state.outcome === 'ok' ? 'OK' : state.outcome.toUpperCase()) +
          (why ? ': ' + why : '') + ' (exit ' + state.exit_code + ', ' + state.finished_at + ')'));
        const details = el('details', {}, el('summary', {}, 'the command\'s --json document and stderr'),
          el('pre', { class: 'action-result-json' },
            JSON.stringify(state.result, null, 2) + (state.stderr ? '\n\n' + state.stderr : '')));
        nodes.push(details);
      }
      box.className = 'action-status ' + cls;
      box.setAttribute('data-action-id', String(state.id));
      box.replaceChildren(...nodes);
    }
  }

  function render(snapshot) {
    const units = snapshot.units || {};
    document.getElementById('instance').textContent =
      units.instance ? 'instance ' + units.instance : '';
    document.getElementById('updated').textContent =
      'snapshot ' + snapshot.version + ', ' + new Date().toLocaleTimeString();
    document.body.setAttribute('data-version', String(snapshot.version));
    renderUnits(snapshot.units, snapshot.master_keys);
    renderAdmins(snapshot.master_keys);
    renderMasterKeys(snapshot.master_keys);
    renderRotation(snapshot.rotation, snapshot.rotation_progress);
    renderKeys(snapshot.recovery, snapshot.rotation_progress);
    renderRecovery(snapshot.recovery);
    renderAudit(snapshot.audit);
    renderAction(snapshot.action);
  }

  // ---- the event stream ---------------------------------------------------

  function setConnection(live, text) {
    const c = document.getElementById('connection');
    c.className = 'connection ' + (live ? 'live' : 'offline');
    c.textContent = text;
  }

  // handleEvent parses one server-sent event (its lines, without the blank
  // line that ends it).
  function handleEvent(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (type === 'snapshot' && data.length) render(JSON.parse(data.join('\n')));
  }

  // EventSource cannot send an Authorization header, so the stream is read
  // with fetch(); it reconnects after any end or error.
  async function follow() {
    for (;;) {
      try {
        const res = await fetch('/api/events', { headers: authHeaders, cache: 'no-store' });
        if (res.status === 401) {
          setConnection(false, 'access token refused: open the URL hsmctl console printed');
          return;
        }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        setConnection(true, 'live');
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            handleEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (e) {
        // fall through to reconnect
      }
      setConnection(false, 'disconnected: reconnecting…');
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  // ---- tabs -----------------------------------------------------------------

  for (const button of document.querySelectorAll('#tabs button')) {
    button.addEventListener('click', () => {
      for (const b of document.querySelectorAll('#tabs button')) {
        b.classList.toggle('active', b === button);
      }
      for (const t of document.querySelectorAll('.tab')) {
        t.classList.toggle('active', t.id === 'tab-' + button.dataset.tab);
      }
    });
  }

  follow();
})();
