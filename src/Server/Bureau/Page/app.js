// The bureau's page: fetches /bureau/api/summary and fills the page. Every figure carries its exact value in fen in a
// data-fen attribute beside the yuan it shows. Text goes in through textContent only, never as HTML.
"use strict";

const yuanDigits = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** Fen (an integer) as yuan: "¥12,345.67". Integer arithmetic up to the cents; fen stay well below 2^53. */
function yuan(fen) {
  const sign = fen < 0 ? "-" : "";
  const abs = Math.abs(fen);
  const whole = Math.trunc(abs / 100);
  const cents = String(abs % 100).padStart(2, "0");
  return `${sign}¥${yuanDigits.format(whole).slice(0, -3)}.${cents}`;
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  node.textContent = text;
  return node;
}

function money(tag, field, fen, extra = {}) {
  return element(tag, { "data-field": field, "data-fen": fen, ...extra }, yuan(fen));
}

function dateTime(iso) {
  return new Date(iso).toLocaleString("en-GB", { timeZone: "Asia/Shanghai", dateStyle: "medium", timeStyle: "short" }) + " CST";
}

const programFigures = [
  ["yearTotalFen", "year-total", "Year total"],
  ["fundedFen", "funded", "Funded"],
  ["poolFen", "pool", "Pool"],
  ["grantedOpenFen", "granted", "Granted, open"],
  ["deductedFen", "deducted", "Deducted"],
  ["redeemedFen", "redeemed", "Redeemed"],
  ["disbursedFen", "disbursed", "Disbursed"],
  ["reclaimedFen", "reclaimed", "Reclaimed"],
  ["clawedBackFen", "clawed-back", "Clawed back"],
  ["receivableFen", "receivable", "Receivable"],
];

function showProgramYear(summary) {
  for (const node of document.querySelectorAll('[data-field="year"]')) {
    node.textContent = summary.year;
  }
  const list = document.getElementById("program-year");
  for (const [key, field, label] of programFigures) {
    const item = element("div");
    item.append(element("dt", {}, label), money("dd", field, summary.programYear[key], { "data-figure": field }));
    list.append(item);
  }
}

function showJournal(journal) {
  const badge = document.getElementById("journal-badge");
  badge.dataset.journalOk = String(journal.ok);
  badge.textContent = journal.ok ? "Verified" : "Verification FAILED";
  const facts = [
    ["entries-checked", "Entries checked", journal.entriesChecked],
    ["chains", "Chains", journal.chains],
    ["accounts-checked", "Accounts checked", journal.accountsChecked],
    ["checkpoints-verified", "Checkpoints verified", journal.checkpointsVerified],
    ["checkpoint-id", "Latest checkpoint", journal.checkpointId || "none yet"],
  ];
  if (!journal.ok) {
    facts.push(["problem", "Problem", journal.problem]);
  }
  const list = document.getElementById("journal");
  for (const [field, label, value] of facts) {
    list.append(element("dt", {}, label), element("dd", { "data-journal": field, "data-value": value }, value));
  }
}

/** A table's empty state: one row, one cell across every column, saying what is not there. */
function emptyRow(table, text) {
  const row = element("tr", { "data-empty": "" });
  row.append(element("td", { colspan: table.tHead.rows[0].cells.length, class: "empty" }, text));
  table.tBodies[0].append(row);
}

/** A unit as people know it, by name, with its USCC beneath. */
function unit(name, uscc) {
  const cell = element("td", { "data-field": "unit", "data-uscc": uscc });
  cell.append(element("span", { class: "unit-name" }, name || "(no name)"), element("span", { class: "uscc muted" }, uscc));
  return cell;
}

function showUnitYears(unitYears) {
  const table = document.getElementById("unit-years");
  for (const u of unitYears) {
    const committed = u.grantedOpenFen + u.deductedFen;
    const row = element("tr", { "data-unit-year": u.unitUscc });
    const used = element("meter", { min: 0, max: Math.max(u.capFen, 1), low: u.capFen * 0.8, high: u.capFen * 0.9, optimum: 0, value: committed });
    const percent = u.capFen > 0 ? `${(100 * committed / u.capFen).toFixed(1)}%` : "no cap";
    used.title = u.capFen > 0 ? `${percent} of the cap` : "no cap";
    const usage = element("td", { class: "usage", "data-field": "used", "data-value": percent });
    usage.append(used, element("span", { class: "percent" }, percent));
    row.append(
      unit(u.unitName, u.unitUscc),
      money("td", "cap", u.capFen, { class: "num" }),
      money("td", "granted-open", u.grantedOpenFen, { class: "num" }),
      money("td", "deducted", u.deductedFen, { class: "num" }),
      money("td", "headroom", u.headroomFen, { class: "num" }),
      usage);
    table.tBodies[0].append(row);
  }
  if (unitYears.length === 0) {
    emptyRow(table, "No unit has been granted anything this year.");
  }
}

function showExpiringGrants(expiring) {
  document.querySelector('[data-field="expiring-days"]').textContent = expiring.withinDays;
  const table = document.getElementById("expiring-grants");
  for (const g of expiring.grants) {
    const row = element("tr", { "data-grant": g.grantId });
    row.append(
      element("td", {}, `#${g.grantId}`),
      unit(g.unitName, g.unitUscc),
      money("td", "remaining", g.remainingFen, { class: "num" }),
      element("td", { "data-field": "expires-at", "data-value": g.expiresAt }, dateTime(g.expiresAt)));
    table.tBodies[0].append(row);
  }
  if (expiring.grants.length === 0) {
    emptyRow(table, `No grant with quota left expires within ${expiring.withinDays} days.`);
  }
}

function showRedemptions(states) {
  const table = document.getElementById("redemptions");
  if (states.every((s) => s.count === 0)) {
    emptyRow(table, "No redemption application this year.");
    return;
  }
  for (const s of states) {
    const row = element("tr", { "data-redemption-state": s.state });
    row.append(
      element("td", {}, s.state),
      element("td", { class: "num", "data-field": "count", "data-value": s.count }, s.count),
      money("td", "requested", s.requestedFen, { class: "num" }),
      money("td", "approved", s.approvedFen, { class: "num" }),
      money("td", "outstanding", s.outstandingFen, { class: "num" }),
      money("td", "disbursed", s.disbursedFen, { class: "num" }));
    table.tBodies[0].append(row);
  }
}

function showClosings(closings) {
  const table = document.getElementById("closings");
  for (const c of closings) {
    const row = element("tr", { "data-period": c.period, "data-closed": c.closed, class: c.month === 0 ? "year-line" : "" });
    row.append(element("td", {}, c.month === 0 ? `${c.period} (year)` : c.period));
    if (!c.closed) {
      row.append(element("td", { "data-field": "state", colspan: 7, class: "muted" }, c.state));
      table.tBodies[0].append(row);
      continue;
    }
    const figures = c.figures ?? { poolFen: 0, grantedOpenFen: 0, deductedFen: 0, disbursedFen: 0 };
    row.append(
      element("td", { "data-field": "closed-at", "data-value": c.closedAt }, `${dateTime(c.closedAt)}, checkpoint #${c.checkpointId}`),
      element("td", { class: "num", "data-field": "entries", "data-value": c.entries }, c.entries),
      money("td", "pool", figures.poolFen, { class: "num" }),
      money("td", "granted", figures.grantedOpenFen, { class: "num" }),
      money("td", "deducted", figures.deductedFen, { class: "num" }),
      money("td", "disbursed", figures.disbursedFen, { class: "num" }),
      c.corrections === 0
        ? element("td", { "data-field": "corrections", "data-value": 0, class: "muted" }, "none")
        : element("td", { "data-field": "corrections", "data-value": c.corrections, "data-fen": c.correctedFen },
          `${c.corrections} (${yuan(c.correctedFen)})`));
    table.tBodies[0].append(row);
  }
}

/** The chart of deductions over time, drawn by Chart.js: bars per day, a line for the running total. */
function showDeductions(days) {
  let total = 0;
  const running = days.map((d) => (total += d.appliedFen) / 100);
  const canvas = document.getElementById("deductions-chart");
  canvas.dataset.days = days.length;
  const none = document.getElementById("no-deductions");
  none.hidden = days.length > 0;
  return new Chart(canvas, {
    data: {
      labels: days.map((d) => d.day),
      datasets: [
        { type: "bar", label: "Applied that day (¥)", data: days.map((d) => d.appliedFen / 100), backgroundColor: "#1f6feb", yAxisID: "y", order: 2 },
        { type: "line", label: "Running total (¥)", data: running, borderColor: "#bf8700", backgroundColor: "#bf8700", yAxisID: "total", tension: 0.2, order: 1 },
      ],
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        y: { beginAtZero: true, position: "left", title: { display: true, text: "per day" }, ticks: { callback: (v) => yuan(Math.round(v * 100)) } },
        total: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "running total" }, ticks: { callback: (v) => yuan(Math.round(v * 100)) } },
      },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label.replace(" (¥)", "")}: ${yuan(Math.round(c.parsed.y * 100))}` } } },
    },
  });
}

async function main() {
  const year = new URLSearchParams(location.search).get("year");
  const yearInput = document.getElementById("year");
  document.getElementById("year-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.search = `?year=${encodeURIComponent(yearInput.value)}`;
  });
  try {
    const response = await fetch(`/bureau/api/summary${year ? `?year=${encodeURIComponent(year)}` : ""}`, { headers: { accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) {
      throw new Error(`${body.reason}: ${body.message}`);
    }
    yearInput.value = body.year;
    const asOf = document.getElementById("as-of");
    asOf.dateTime = body.at;
    asOf.textContent = dateTime(body.at);
    showProgramYear(body);
    showJournal(body.journal);
    showUnitYears(body.closestToCap);
    showExpiringGrants(body.expiringGrants);
    showRedemptions(body.redemptions);
    showDeductions(body.deductionsPerDay);
    showClosings(body.closings);
    document.body.dataset.state = "ready";
  } catch (error) {
    const message = document.getElementById("error");
    message.textContent = `The summary could not be shown: ${error.message}`;
    message.hidden = false;
    document.body.dataset.state = "error";
  }
}

main();
