"use strict";
// Draws the report from the JSON in #run-data. Every text from the run goes
// into the page through textContent or an SVG text node, never as markup.
(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATE_COLOURS = {
    done: "#2f9e44", running: "#1c7ed6", ready: "#f59f00",
    pending: "#adb5bd", failed: "#e03131", cancelled: "#868e96",
  };
  const CRITICAL = "#d9480f";
  const data = JSON.parse(document.getElementById("run-data").textContent);
  const run = data.run;
  const tasks = data.tasks;
  const byId = new Map(tasks.map((task) => [task.id, task]));

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svg(tag, attributes, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function svgText(parent, x, y, text, attributes) {
    const node = svg("text", Object.assign({ x: x, y: y }, attributes || {}), parent);
    node.textContent = String(text);
    return node;
  }

  function seconds(value) {
    return value === null || value === undefined ? "-" : value.toFixed(2) + " s";
  }

  function clip(text, length) {
    const flat = String(text).replace(/\s+/g, " ");
    return flat.length > length ? flat.slice(0, length - 1) + "\u2026" : flat;
  }

  function stateColour(state) {
    return STATE_COLOURS[state] || "#adb5bd";
  }

  // --- header and figures -------------------------------------------------

  document.getElementById("run-id").textContent = run.run_id;
  document.getElementById("request").textContent = run.request;
  document.title = "dyntaskmas run " + run.run_id;
  const stateCounts = Object.entries(run.states).map(([s, n]) => n + " " + s).join(", ");
  const figures = [
    ["status", run.status],
    ["makespan", seconds(run.makespan_s)],
    ["sum of task durations", seconds(run.sequential_s)],
    ["speed-up over one task at a time", run.speedup === null ? "-" : run.speedup + "x"],
    ["agents", run.agents],
    ["mean agent utilisation", run.mean_utilisation === null ? "-" :
      (100 * run.mean_utilisation).toFixed(1) + " %"],
    ["tasks", run.tasks + (stateCounts ? " (" + stateCounts + ")" : "")],
    ["critical path", data.critical_path.join(" \u2192 ") || "-"],
    ["model calls", run.llm_calls + (run.retries ? " (" + run.retries + " retries)" : "")],
    ["prompt tokens", run.prompt_tokens.toLocaleString("en")],
    ["completion tokens", run.completion_tokens.toLocaleString("en")],
  ];
  if (run.cost !== null && run.cost !== undefined) figures.push(["cost", run.cost.toFixed(6)]);
  if (run.unpriced_models.length) {
    figures.push(["models without a price", run.unpriced_models.join(", ")]);
  }
  const figureTable = document.getElementById("figures");
  for (const [name, value] of figures) {
    const row = el("tr");
    row.appendChild(el("th", name));
    row.appendChild(el("td", value));
    figureTable.appendChild(row);
  }

  // --- task graph: columns by layer, critical path in orange ---------------

  const legend = document.getElementById("graph-legend");
  for (const [state, colour] of Object.entries(STATE_COLOURS).concat([["critical path", CRITICAL]])) {
    const item = el("span");
    const swatch = svg("svg", { width: 11, height: 11, "aria-hidden": "true" });
    svg("rect", { width: 11, height: 11, rx: 2, fill: colour }, swatch);
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(" " + state));
    legend.appendChild(item);
  }

  const NODE_W = 150, NODE_H = 34, COL_GAP = 60, ROW_GAP = 14, PAD = 16;
  const layers = Math.max(0, ...tasks.map((t) => t.layer)) + 1;
  const rows = Math.max(0, ...tasks.map((t) => t.row)) + 1;
  const graph = svg("svg", {
    id: "graph-svg",
    width: PAD * 2 + layers * NODE_W + (layers - 1) * COL_GAP,
    height: PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP,
  });
  const position = (task) => ({
    x: PAD + task.layer * (NODE_W + COL_GAP),
    y: PAD + task.row * (NODE_H + ROW_GAP),
  });
  const edgeLayer = svg("g", {}, graph);
  const criticalEdges = new Set();
  for (let i = 1; i < data.critical_path.length; i++) {
    criticalEdges.add(data.critical_path[i - 1] + "\u0000" + data.critical_path[i]);
  }
  for (const task of tasks) {
    for (const dep of task.depends_on) {
      const source = byId.get(dep);
      if (!source) continue;
      const a = position(source), b = position(task);
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
      const middle = (x1 + x2) / 2;
      const critical = criticalEdges.has(dep + "\u0000" + task.id);
      svg("path", {
        d: `M${x1},${y1} C${middle},${y1} ${middle},${y2} ${x2},${y2}`,
        fill: "none",
        stroke: critical ? CRITICAL : "#9aa3b2",
        "stroke-width": critical ? 2.5 : 1.2,
        class: critical ? "edge critical" : "edge",
      }, edgeLayer);
    }
  }
  for (const task of tasks) {
    const p = position(task);
    const node = svg("g", { class: "node", "data-task": task.id, transform: `translate(${p.x},${p.y})` }, graph);
    svg("rect", {
      width: NODE_W, height: NODE_H, rx: 5, fill: stateColour(task.state), "fill-opacity": 0.18,
      stroke: task.critical ? CRITICAL : stateColour(task.state), "stroke-width": task.critical ? 2.5 : 1.5,
    }, node);
    svgText(node, 8, 14, clip(task.id, 22), { "font-weight": 600 });
    svgText(node, 8, 27, clip(task.kind + " \u00b7 " + (task.agent || task.role), 24), { class: "axis" });
    const title = svg("title", {}, node);
    title.textContent = task.id + " (" + task.state + "): " + task.description;
    node.addEventListener("click", () => showTask(task.id));
  }
  document.getElementById("graph").appendChild(graph);

  // --- Gantt chart: one row per agent --------------------------------------

  const span = Math.max(run.makespan_s, 1e-9);
  const LABEL_W = 120, ROW_H = 26, CHART_W = 900, AXIS_H = 22;
  const scale = (t) => LABEL_W + (t / span) * CHART_W;

  function axis(parent, top, height) {
    const ticks = 8;
    for (let i = 0; i <= ticks; i++) {
      const t = (span * i) / ticks;
      const x = scale(t);
      svg("line", { x1: x, x2: x, y1: top, y2: top + height, stroke: "#e5e8ee" }, parent);
      svgText(parent, x, top + height + 14, t.toFixed(t < 10 ? 2 : 1) + " s",
        { class: "axis", "text-anchor": "middle" });
    }
  }

  const agents = data.agents;
  const gantt = svg("svg", {
    id: "gantt-svg", width: LABEL_W + CHART_W + 40, height: agents.length * ROW_H + AXIS_H + 10,
  });
  axis(gantt, 0, agents.length * ROW_H);
  agents.forEach((agent, index) => {
    svgText(gantt, 4, index * ROW_H + 17, clip(agent, 18));
  });
  const agentRow = new Map(agents.map((agent, index) => [agent, index]));
  for (const task of tasks) {
    if (task.agent === null || task.start === null || !agentRow.has(task.agent)) continue;
    const end = task.end === null ? run.makespan_s : task.end;
    const y = agentRow.get(task.agent) * ROW_H + 4;
    const bar = svg("g", { class: "bar node", "data-task": task.id }, gantt);
    svg("rect", {
      x: scale(task.start), y: y, width: Math.max(1, scale(end) - scale(task.start)), height: ROW_H - 8,
      rx: 3, fill: stateColour(task.state),
      stroke: task.critical ? CRITICAL : "none", "stroke-width": task.critical ? 2 : 0,
    }, bar);
    const width = scale(end) - scale(task.start);
    if (width > 40) {
      svgText(bar, scale(task.start) + 4, y + 13, clip(task.id, Math.floor(width / 7)), { fill: "#fff" });
    }
    const title = svg("title", {}, bar);
    title.textContent = task.id + ": " + seconds(task.start) + " to " + seconds(end) + ", " +
      task.description;
    bar.addEventListener("click", () => showTask(task.id));
  }
  document.getElementById("gantt").appendChild(gantt);

  // --- utilisation over time ------------------------------------------------

  const UTIL_H = 120;
  const util = svg("svg", { id: "utilisation-svg", width: LABEL_W + CHART_W + 40, height: UTIL_H + AXIS_H + 10 });
  axis(util, 0, UTIL_H);
  const capacity = Math.max(run.agents, 1);
  const yOf = (busy) => UTIL_H - (busy / capacity) * UTIL_H;
  let points = "";
  let previous = 0;
  for (const [at, busy] of data.utilisation) {
    points += `${scale(at)},${yOf(previous)} ${scale(at)},${yOf(busy)} `;
    previous = busy;
  }
  svg("polyline", { points: points.trim(), fill: "none", stroke: "#1c7ed6", "stroke-width": 1.5 }, util);
  svgText(util, 4, 12, capacity + " agents", { class: "axis" });
  svgText(util, 4, UTIL_H, "0", { class: "axis" });
  document.getElementById("utilisation").appendChild(util);

  // --- concurrency limit per endpoint, as the allocator set it --------------

  const LIMIT_COLOURS = ["#1c7ed6", "#d9480f", "#2f9e44", "#7048e8", "#e8590c", "#0c8599"];
  const limitSection = document.getElementById("limits");
  if (!data.limits.length) {
    limitSection.appendChild(el("p", "No allocator samples were recorded for this run.", "axis"));
  } else {
    const highest = Math.max(1, ...data.limits.flatMap((series) => series.steps.map((s) => s[1])));
    const limits = svg("svg", { id: "limits-svg", width: LABEL_W + CHART_W + 40, height: UTIL_H + AXIS_H + 10 });
    axis(limits, 0, UTIL_H);
    const yOfLimit = (limit) => UTIL_H - (limit / highest) * UTIL_H;
    const limitLegend = document.getElementById("limits-legend");
    data.limits.forEach((series, index) => {
      const colour = LIMIT_COLOURS[index % LIMIT_COLOURS.length];
      let line = "";
      let last = null;
      for (const [at, limit] of series.steps) {
        if (last !== null) line += `${scale(at)},${yOfLimit(last)} `;
        line += `${scale(at)},${yOfLimit(limit)} `;
        last = limit;
      }
      const polyline = svg("polyline", {
        points: line.trim(), fill: "none", stroke: colour, "stroke-width": 1.5, class: "limit-line",
      }, limits);
      const title = svg("title", {}, polyline);
      title.textContent = series.endpoint + ": limit " +
        series.steps.map(([at, limit]) => limit + " from " + seconds(at)).join(", ");
      const item = el("span");
      const swatch = svg("svg", { width: 11, height: 11, "aria-hidden": "true" });
      svg("rect", { width: 11, height: 11, rx: 2, fill: colour }, swatch);
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(" " + series.endpoint + " (last " + last + ")"));
      limitLegend.appendChild(item);
    });
    svgText(limits, 4, 12, highest + " requests", { class: "axis" });
    svgText(limits, 4, UTIL_H, "0", { class: "axis" });
    limitSection.appendChild(limits);
  }

  // --- per-task details -----------------------------------------------------

  const list = document.getElementById("task-list");
  const details = new Map();
  function block(parent, heading, text) {
    parent.appendChild(el("h4", heading));
    parent.appendChild(el("pre", text));
  }
  for (const task of tasks) {
    const item = el("details", null, "task");
    item.id = "task-" + task.id;
    const summary = el("summary");
    summary.appendChild(el("span", task.state, "state st-" + task.state));
    summary.appendChild(el("b", task.id));
    summary.appendChild(document.createTextNode(clip(task.description, 90)));
    const timing = task.start === null ? "not started" :
      seconds(task.start) + " to " + seconds(task.end);
    summary.appendChild(el("span", "  " + (task.agent || "no agent") + ", " + timing + ", " +
      task.prompt_tokens + " + " + task.completion_tokens + " tokens", "meta"));
    if (task.critical) summary.appendChild(el("span", "critical path", "critical-mark"));
    item.appendChild(summary);
    const body = el("div", null, "body");
    block(body, "Description", task.description);
    block(body, "Role, kind, dependencies",
      task.role + ", " + task.kind + ", depends on: " + (task.depends_on.join(", ") || "nothing"));
    if (task.context_sources.length || task.context_left_out.length) {
      block(body, "Context", "from: " + (task.context_sources.join(", ") || "-") +
        "; left out: " + (task.context_left_out.join(", ") || "-"));
    }
    task.calls.forEach((call, index) => {
      const heading = "Model call " + (index + 1) + ": " + call.model + ", " +
        seconds(call.start) + " to " + seconds(call.end) + ", " + call.prompt_tokens + " + " +
        call.completion_tokens + " tokens" + (call.attempts > 1 ? ", " + call.attempts + " attempts" : "");
      const prompt = call.messages.map(([role, content]) => "[" + role + "]\n" + content).join("\n\n");
      block(body, heading, prompt || "(prompt not recorded)");
    });
    if (task.output !== null) block(body, "Output", task.output);
    if (task.error !== null) block(body, "Error", task.error);
    item.appendChild(body);
    list.appendChild(item);
    details.set(task.id, item);
  }

  let selected = null;
  function showTask(id) {
    const item = details.get(id);
    if (!item) return;
    if (selected) selected.classList.remove("selected");
    selected = item;
    item.open = true;
    item.classList.add("selected");
    item.scrollIntoView({ block: "nearest" });
  }
  document.body.setAttribute("data-rendered", "true");
})();
