// teal dashboard: keeps the server-rendered page live. No dependencies, no build step.
//
// It listens to the API's event stream (GET /api/v1/events, with the session cookie) and, on
// each event (debounced), refetches /api/v1/status, and /api/v1/releases when the release
// moved on. It also polls the status every 2 s: the per-colour request and error counters,
// read twice, give the rates the small charts draw. The buttons POST to the API with the
// session's CSRF token. The rules of what is shown mirror dashboard/view.go.
(() => {
  'use strict';

  const POLL_MS = 2000;
  const WINDOW_MS = 120000; // what the charts show
  const DEBOUNCE_MS = 150;
  const HISTORY = 10;
  const EVENT_KINDS = ['phase', 'step', 'traffic', 'health', 'action', 'error'];
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (sel, root = document) => root.querySelector(sel);
  const bootEl = $('#boot');
  if (!bootEl) return;
  const boot = JSON.parse(bootEl.textContent);
  // Durations of running steps are measured on the server's clock.
  const skew = Date.parse(boot.now) - Date.now();
  const now = () => Date.now() + skew;

  let status = boot.status || {};
  let releases = boot.releases || [];
  let releaseKey = keyOf(status.release);
  const samples = { blue: [], green: [] };
  let sessionEnded = false;

  // h builds an element: h('li', {class: 'x', dataset: {a: 1}, title: 't'}, child, 'text').
  function h(tag, attrs, ...kids) {
    const svg = tag === 'svg' || tag === 'rect' || tag === 'polyline';
    const el = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids) {
      if (kid !== null && kid !== undefined) el.append(kid);
    }
    return el;
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  // replaceKids swaps el's children only when what they show changed, so that hovering and
  // selecting text are not disturbed by updates that change nothing.
  function replaceKids(el, key, build) {
    if (!el || el.dataset.key === key) return;
    el.dataset.key = key;
    el.replaceChildren(...build());
  }

  // duration and ago read like view.go's.
  function duration(ms) {
    if (ms < 0) return '0ms';
    if (ms < 1000) return Math.floor(ms) + 'ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + String(Math.floor(s) % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h ' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
  }

  function ago(t) {
    const s = (now() - Date.parse(t)) / 1000;
    if (s < 5) return 'just now';
    if (s < 60) return Math.floor(s) + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 48 * 3600) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }

  function shortDigest(d) {
    if (!d) return '—';
    const i = d.indexOf(':');
    const algo = i < 0 ? '' : d.slice(0, i + 1);
    return algo + d.slice(i + 1, i + 13);
  }

  function keyOf(r) {
    return r ? [r.id, r.phase, r.outcome || ''].join('/') : '';
  }

  function envOf(st, color) {
    return (st.environments || []).find((e) => e.color === color) || { color, state: 'empty' };
  }

  function inProgress(r) {
    return r && !r.outcome;
  }

  // actionsOf mirrors view.go: the controller's rules, so that a button that would certainly be
  // refused is greyed out. The API has the last word.
  function actionsOf(st) {
    const r = st.release;
    if (!r) return { promote: false, abort: false, rollback: false };
    const beforeSwitch = r.phase !== 'switching' && r.phase !== 'released';
    if (!r.outcome) return { promote: beforeSwitch && !r.promoted, abort: beforeSwitch, rollback: false };
    return {
      promote: r.outcome === 'rolled-back',
      abort: false,
      rollback: r.outcome === 'released' && !!st.live && st.live.color === r.color && !!r.from,
    };
  }

  // --- rendering ---------------------------------------------------------------------------

  function render() {
    const st = status;
    const live = st.live;
    setText($('#live-version'), (live && live.version) || '—');
    const lc = $('#live-color');
    lc.hidden = !live;
    if (live) {
      lc.className = 'chip ' + live.color;
      setText(lc, live.color);
    }
    renderRelease();
    renderTraffic(st.traffic || { blue: 0, green: 0 });
    for (const c of ['blue', 'green']) renderColor(c);
    renderSteps();
    const can = actionsOf(st);
    $('#release-btn').disabled = !can.promote;
    $('#abort-btn').disabled = !can.abort;
    $('#rollback-btn').disabled = !can.rollback;
  }

  function renderRelease() {
    const r = status.release;
    const box = $('#release');
    const phase = $('#phase');
    if (!r) return;
    box.dataset.id = r.id;
    setText($('#release-id'), '#' + r.id);
    setText($('#release-version'), r.version);
    const rc = $('#release-color');
    rc.hidden = false;
    rc.className = 'chip ' + r.color;
    setText(rc, r.color);
    const arrow = $('.arrow', box);
    if (arrow) arrow.hidden = false;
    phase.dataset.phase = r.phase;
    phase.dataset.outcome = r.outcome || '';
    setText(phase, r.outcome || r.phase);
    const end = r.outcome && r.finished ? Date.parse(r.finished) : now();
    replaceKids($('#release-meta'), [r.actor, ago(r.created), duration(end - Date.parse(r.created))].join('|'), () => [
      'started by ' + r.actor + ' · ',
      h('span', { title: r.created, text: ago(r.created) }),
      ' · ' + duration(end - Date.parse(r.created)),
    ]);
    const err = $('#release-error');
    err.hidden = !r.error;
    setText(err, r.error || '');
  }

  function renderTraffic(t) {
    const bar = $('#traffic-bar');
    const blue = t.blue || 0;
    const green = t.green || 0;
    bar.dataset.blue = blue;
    bar.dataset.green = green;
    $('rect.seg.blue', bar).setAttribute('width', blue);
    const g = $('rect.seg.green', bar);
    g.setAttribute('x', blue);
    g.setAttribute('width', green);
    setText($('#traffic-blue'), blue + '%');
    setText($('#traffic-green'), green + '%');
  }

  function renderColor(c) {
    const card = $('#color-' + c);
    if (!card) return;
    const env = envOf(status, c);
    const live = !!status.live && status.live.color === c;
    const f = (name) => $('[data-field="' + name + '"]', card);
    card.dataset.state = env.state;
    card.dataset.live = String(live);
    setText(f('state'), env.state);
    setText(f('traffic'), ((status.traffic || {})[c] || 0) + '%');
    setText(f('version'), env.version || '—');
    setText(f('digest'), shortDigest(env.digest));
    f('digest').title = env.digest || '';
    const since = env.since && !env.since.startsWith('0001-') ? env.since : '';
    setText(f('since'), since ? ago(since) : '—');
    f('since').title = since;
    setText(f('open'), String(env.open_connections || 0));
    setText(f('longlived'), String(env.long_lived || 0));
    setText(f('requests'), String(env.requests || 0));
    setText(f('errors'), String(env.errors || 0));

    const insts = (env.instances || []).map((in_) => {
      const hh = (env.health || []).find((x) => x.index === in_.index);
      let health = 'unknown';
      let note = 'not checked yet';
      if (hh) {
        health = hh.healthy ? 'healthy' : 'unhealthy';
        note = hh.healthy ? 'healthy' : hh.last_error || 'unhealthy';
      }
      return { index: in_.index, addr: in_.addr, health, note };
    });
    replaceKids(f('instances'), JSON.stringify(insts), () =>
      insts.length === 0
        ? [h('li', { class: 'none', text: 'no instances' })]
        : insts.map((i) =>
            h('li', { class: 'inst', dataset: { health: i.health }, title: i.note },
              h('span', { class: 'dot' }),
              h('span', { class: 'mono', text: '#' + i.index }),
              h('span', { class: 'mono addr', text: i.addr }),
              h('span', { class: 'note', text: i.note }))));
    renderCharts(card, c);
  }

  // renderSteps lays the steps out on the release's timeline, as view.go's stepsOf does.
  function renderSteps() {
    const r = status.release;
    const t = now();
    const created = r ? Date.parse(r.created) : 0;
    const end = r && r.outcome && r.finished ? Date.parse(r.finished) : t;
    const span = end - created;
    const rows = ((r && r.steps) || []).map((s) => {
      const start = Date.parse(s.started);
      const ms = (s.finished ? Date.parse(s.finished) : t) - start;
      let x = 0;
      let w = 0;
      if (span > 0) {
        x = Math.min(100, Math.max(0, (100 * (start - created)) / span));
        w = Math.min(100 - x, Math.max(0.5, (100 * ms) / span));
      }
      return { name: s.name, state: s.state, x: x.toFixed(1), w: w.toFixed(1), dur: duration(ms) };
    });
    replaceKids($('#steps'), JSON.stringify(rows), () =>
      rows.length === 0
        ? [h('li', { class: 'none', text: 'no steps yet' })]
        : rows.map((s) =>
            h('li', { class: 'step', dataset: { state: s.state } },
              h('span', { class: 'dot' }),
              h('span', { class: 'name mono', text: s.name }),
              h('svg', { class: 'sbar', viewBox: '0 0 100 6', preserveAspectRatio: 'none' },
                h('rect', { x: s.x, y: 0, width: s.w, height: 6 })),
              h('span', { class: 'dur mono', text: s.dur }))));
    if (r) setText($('#steps-total'), '#' + r.id + ' · ' + duration(span));
  }

  function renderHistory() {
    const rows = releases.slice(0, HISTORY).map((r) => {
      const end = r.outcome && r.finished ? Date.parse(r.finished) : now();
      return { id: r.id, version: r.version, color: r.color, phase: r.phase, outcome: r.outcome || '', actor: r.actor,
        created: r.created, ago: ago(r.created), took: duration(end - Date.parse(r.created)), error: r.error || '' };
    });
    replaceKids($('#history'), JSON.stringify(rows), () =>
      rows.length === 0
        ? [h('tr', { class: 'none' }, h('td', { colspan: 7, text: 'no releases yet' }))]
        : rows.map((r) =>
            h('tr', { dataset: { id: r.id } },
              h('td', { class: 'mono', text: '#' + r.id }),
              h('td', { class: 'mono', text: r.version }),
              h('td', {}, h('span', { class: 'chip ' + r.color, text: r.color })),
              h('td', {}, h('span', { class: 'badge', dataset: { phase: r.phase, outcome: r.outcome }, title: r.error, text: r.outcome || r.phase })),
              h('td', { text: r.actor }),
              h('td', { title: r.created, text: r.ago }),
              h('td', { class: 'mono', text: r.took }))));
  }

  // --- rates ---------------------------------------------------------------------------------

  // sample records the colours' counters; two readings at least a second apart make a rate.
  function sample(st) {
    const t = now();
    for (const c of ['blue', 'green']) {
      const env = envOf(st, c);
      const list = samples[c];
      const last = list[list.length - 1];
      if (last && t - last.t < 1000) continue;
      list.push({ t, req: env.requests || 0, err: env.errors || 0 });
      while (list.length > 2 && list[1].t < t - WINDOW_MS) list.shift();
    }
  }

  function rates(c) {
    const list = samples[c];
    const out = [];
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1];
      const b = list[i];
      const dreq = b.req - a.req;
      const derr = b.err - a.err;
      if (dreq < 0 || derr < 0) continue; // the server restarted: counters start over
      out.push({ t: b.t, rps: (dreq * 1000) / (b.t - a.t), err: dreq > 0 ? (100 * derr) / dreq : 0 });
    }
    return out;
  }

  function renderCharts(card, c) {
    const rs = rates(c);
    draw($('[data-chart="rps"] svg', card), rs.map((r) => [r.t, r.rps]), 1);
    draw($('[data-chart="err"] svg', card), rs.map((r) => [r.t, r.err]), 1);
    const last = rs[rs.length - 1];
    setText($('[data-field="rps"]', card), last ? fmtRate(last.rps) + '/s' : '—');
    setText($('[data-field="err"]', card), last ? fmtPct(last.err) : '—');
  }

  function fmtRate(v) {
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  function fmtPct(v) {
    return (v > 0 && v < 1 ? v.toFixed(2) : v.toFixed(1)) + '%';
  }

  // draw fills a 120×32 sparkline with points [time, value] over the last WINDOW_MS, or since
  // the page opened when that is shorter (both colours' charts share the scale of time);
  // floor is the least top of the value scale, so that noise near zero stays flat.
  function draw(svg, pts, floor) {
    if (!svg) return;
    const t1 = now();
    const first = Math.min(...['blue', 'green'].map((c) => (samples[c][1] || { t: t1 }).t));
    const t0 = Math.max(t1 - WINDOW_MS, Math.min(first, t1 - 10000));
    const span = t1 - t0;
    const top = Math.max(floor, ...pts.map((p) => p[1])) * 1.1;
    const xy = pts
      .filter((p) => p[0] >= t0)
      .map((p) => [((p[0] - t0) / span) * 120, 31 - (p[1] / top) * 29].map((n) => n.toFixed(1)).join(','));
    const line = xy.join(' ');
    $('polyline.line', svg).setAttribute('points', line);
    const area = xy.length ? xy[0].split(',')[0] + ',32 ' + line + ' ' + xy[xy.length - 1].split(',')[0] + ',32' : '';
    $('polyline.area', svg).setAttribute('points', area);
  }

  // --- fetching ------------------------------------------------------------------------------

  async function getJSON(path) {
    const resp = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (resp.status === 401) {
      endSession();
      throw new Error('signed out');
    }
    if (!resp.ok) throw new Error(path + ': ' + resp.status);
    return resp.json();
  }

  let busy = false;
  let again = false;
  let againHistory = false;

  // refresh refetches the status (and the history when asked or when the release moved on);
  // calls made while one runs are folded into one more.
  async function refresh(withHistory) {
    if (sessionEnded) return;
    if (busy) {
      again = true;
      againHistory = againHistory || withHistory;
      return;
    }
    busy = true;
    try {
      status = await getJSON('/api/v1/status');
      sample(status);
      render();
      const k = keyOf(status.release);
      if (withHistory || k !== releaseKey) {
        releaseKey = k;
        releases = await getJSON('/api/v1/releases?limit=' + HISTORY);
        renderHistory();
      }
    } catch (e) {
      setConn(sessionEnded ? 'down' : 'connecting', sessionEnded ? 'signed out' : 'reconnecting…');
    } finally {
      busy = false;
    }
    if (again) {
      const hist = againHistory;
      again = againHistory = false;
      refresh(hist);
    }
  }

  let timer = null;
  let timerHistory = false;

  function schedule(withHistory) {
    timerHistory = timerHistory || withHistory;
    if (timer) return;
    timer = setTimeout(() => {
      const hist = timerHistory;
      timer = null;
      timerHistory = false;
      refresh(hist);
    }, DEBOUNCE_MS);
  }

  function setConn(state, text) {
    const el = $('#conn');
    el.dataset.state = state;
    setText($('#conn-text'), text);
  }

  let events = null;

  function listen() {
    setConn('connecting', 'connecting…');
    events = new EventSource('/api/v1/events');
    events.onopen = () => {
      setConn('live', 'live');
      schedule(true); // whatever happened while the stream was down
    };
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) {
        // The browser gives up on a refused stream: find out why, and try again later.
        setConn('down', 'disconnected');
        refresh(false);
        setTimeout(() => {
          if (!sessionEnded) listen();
        }, 5000);
      } else {
        setConn('connecting', 'reconnecting…');
      }
    };
    for (const kind of EVENT_KINDS) {
      events.addEventListener(kind, () => schedule(kind === 'phase' || kind === 'action'));
    }
    events.onmessage = () => schedule(false);
  }

  function endSession() {
    if (sessionEnded) return;
    sessionEnded = true;
    if (events) events.close();
    setConn('down', 'signed out');
    showError('Your session has ended.', 'Reload the page to sign in again.');
  }

  // --- actions -------------------------------------------------------------------------------

  const other = (c) => (c === 'blue' ? 'green' : 'blue');

  const ACTIONS = {
    promote: {
      path: '/api/v1/releases/current/promote',
      title: 'Release to production?',
      text(st) {
        const r = st.release;
        if (r.outcome === 'rolled-back') {
          return 'Release ' + r.version + ' again: all traffic moves back to ' + r.color + ', which still runs it.';
        }
        const from = st.live ? ' from ' + st.live.color : '';
        return 'Release ' + r.version + ' (#' + r.id + '): all traffic moves' + from + ' to ' + r.color + '.';
      },
      done: 'Released: traffic is moving.',
    },
    rollback: {
      path: '/api/v1/rollback',
      body: { force: false },
      title: 'Roll back?',
      text(st) {
        const r = st.release;
        const prev = envOf(st, other(r.color));
        return 'Roll back release #' + r.id + ' (' + r.version + '): all traffic moves back to ' + prev.color +
          (prev.version ? ' (' + prev.version + ')' : '') + '. ' + r.color + ' stays warm.';
      },
      done: 'Rolled back.',
    },
    abort: {
      path: '/api/v1/releases/current/abort',
      title: 'Abort the release?',
      text(st) {
        const r = st.release;
        const keeps = st.live ? st.live.color + ' keeps serving' : 'nothing was live';
        return 'Abort release #' + r.id + ' (' + r.version + '): ' + r.color + ' is torn down; ' + keeps + '.';
      },
      done: 'Aborted.',
    },
  };

  function showError(msg, hint) {
    const box = $('#action-error');
    setText($('.msg', box), msg);
    setText($('.hint', box), hint || '');
    box.hidden = false;
    $('#action-ok').hidden = true;
  }

  function showDone(msg) {
    $('#action-error').hidden = true;
    const ok = $('#action-ok');
    setText(ok, msg);
    ok.hidden = false;
    clearTimeout(showDone.timer);
    showDone.timer = setTimeout(() => {
      ok.hidden = true;
    }, 6000);
  }

  const dialog = $('#confirm');

  function ask(name) {
    const a = ACTIONS[name];
    if (!a || !status.release) return;
    dialog.dataset.action = name;
    setText($('#confirm-title'), a.title);
    setText($('#confirm-text'), a.text(status));
    setText($('#confirm-yes'), { promote: 'Release', rollback: 'Roll back', abort: 'Abort' }[name]);
    dialog.returnValue = '';
    dialog.showModal();
    $('#confirm-no').focus();
  }

  dialog.addEventListener('close', () => {
    const name = dialog.dataset.action;
    if (dialog.returnValue === 'yes' && name) run(name);
  });

  async function run(name) {
    const a = ACTIONS[name];
    const btn = $('[data-action="' + name + '"]');
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
    const init = { method: 'POST', headers: { 'X-CSRF-Token': boot.csrf, Accept: 'application/json' } };
    if (a.body) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(a.body);
    }
    try {
      const resp = await fetch(a.path, init);
      if (resp.ok) {
        showDone(a.done);
      } else {
        let body = {};
        try {
          body = await resp.json();
        } catch (e) {
          body = { error: resp.status + ' ' + resp.statusText };
        }
        if (resp.status === 401) endSession();
        else showError(body.error || String(resp.status), body.hint);
      }
    } catch (e) {
      showError('The server could not be reached.', String(e));
    } finally {
      btn.removeAttribute('aria-busy');
      refresh(true);
    }
  }

  for (const name of Object.keys(ACTIONS)) {
    const btn = $('[data-action="' + name + '"]');
    if (btn) btn.addEventListener('click', () => ask(name));
  }
  $('#action-error .close').addEventListener('click', () => {
    $('#action-error').hidden = true;
  });

  // --- start ---------------------------------------------------------------------------------

  sample(status);
  render();
  renderHistory();
  listen();
  setInterval(() => refresh(false), POLL_MS);
  // Running steps and "ago" times move on between updates.
  setInterval(() => {
    if (!sessionEnded) {
      renderRelease();
      renderSteps();
      renderHistory();
    }
  }, 1000);
})();
