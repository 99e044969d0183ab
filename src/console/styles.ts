// The console's one stylesheet, served as a file from /console/static/ (the Content-Security-
// Policy allows no inline style). Plain CSS: no build step, nothing fetched from elsewhere.

export const CONSOLE_CSS = `
:root { --fg: #1d2330; --muted: #5b6474; --line: #d9dde5; --bg: #f6f7f9; --card: #fff;
  --red: #b42318; --red-bg: #fdecea; --green: #1a7f37; --green-bg: #e6f4ea; --amber: #8a5a00;
  --amber-bg: #fff4d6; --blue: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #1d2330; color: #fff; }
header.top .brand { font-weight: 700; letter-spacing: .02em; }
header.top nav a { color: #cfd6e4; text-decoration: none; margin-right: 16px; }
header.top nav a.current { color: #fff; border-bottom: 2px solid #fff; }
header.top .who { margin-left: auto; display: flex; align-items: center; gap: 10px; color: #cfd6e4; }
header.top .who form { margin: 0; }
main { padding: 20px 24px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; background: var(--card); }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 12.5px; word-break: break-all; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.detained, .badge.revoked, .badge.bad, .badge.open { background: var(--red-bg); color: var(--red); }
.badge.released, .badge.ok, .badge.closed, .badge.cleared { background: var(--green-bg); color: var(--green); }
.badge.purged, .badge.warn, .badge.half-open { background: var(--amber-bg); color: var(--amber); }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; word-break: normal; }
.flash { padding: 10px 14px; border-radius: 6px; margin-bottom: 16px; }
.flash.ok { background: var(--green-bg); color: var(--green); }
.flash.error { background: var(--red-bg); color: var(--red); }
form.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-end; }
form.filters label, form.stack label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 3px; }
form.stack { display: flex; flex-direction: column; gap: 10px; max-width: 560px; }
input, select, textarea { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 4px; background: #fff; color: var(--fg); }
textarea { min-height: 70px; }
button { font: inherit; padding: 6px 14px; border-radius: 4px; border: 1px solid var(--blue); background: var(--blue); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--blue); }
button.danger { background: var(--red); border-color: var(--red); }
header.top button { padding: 3px 10px; background: transparent; border-color: #cfd6e4; color: #cfd6e4; }
.counts { display: flex; gap: 12px; margin: 12px 0; flex-wrap: wrap; }
.counts .count { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; }
.counts .count b { display: block; font-size: 20px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.actions { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.signin { max-width: 420px; margin: 60px auto; }
.actions form.stack { flex: 1 1 420px; }
.card > h2:first-child { margin-top: 0; }

`
