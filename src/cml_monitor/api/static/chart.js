// CML Worker Monitor dashboard — The CPU and memory chart of a worker page, drawn as SVG.
// Imports nothing: given the points, the range and the thresholds, it returns the drawing.

export const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

const TICK_STEPS = [5, 10, 15, 30, 60, 180, 360, 720, 1440].map((m) => m * 60e3);

// The chosen range on the x-axis (not just the data's), threshold lines, gaps and stopped
// periods drawn as such, each point's value on hover.
export function chart(items, since, until, thresholds) {
  const width = 800, height = 230, pad = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "CPU and memory utilisation over time");
  const add = (name, attrs, parent = svg) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    parent.append(node);
    return node;
  };
  const t0 = since, t1 = Math.max(until, since + 1);
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (width - pad - 10);
  const y = (v) => height - pad - (v / 100) * (height - 2 * pad);
  for (const level of [0, 25, 50, 75, 100]) {
    add("line", { x1: pad, x2: width - 5, y1: y(level), y2: y(level), stroke: "#e4e7ec" });
    add("text", { x: 2, y: y(level) + 4, "font-size": 10, fill: "#667085" }).textContent = level;
  }
  const tick = TICK_STEPS.find((step) => (t1 - t0) / step <= 8) || 86400e3;
  const long = t1 - t0 > 2 * 86400e3;
  for (let t = Math.ceil(t0 / tick) * tick; t <= t1; t += tick) {
    add("line", { x1: x(t), x2: x(t), y1: pad, y2: height - pad, stroke: "#f1f3f5", class: "tickline" });
    add("text", { x: x(t), y: height - 10, "font-size": 10, fill: "#667085", "text-anchor": "middle", class: "tick" }).textContent =
      new Date(t).toLocaleString([], long ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit" });
  }
  const labels = [];
  const same = thresholds.cpu === thresholds.memory;
  const close = Math.abs(y(thresholds.cpu) - y(thresholds.memory)) < 12;
  for (const [value, color, name, key] of [[thresholds.cpu, "#2563eb", "CPU", "cpu"], [thresholds.memory, "#9333ea", "memory", "memory"]]) {
    add("line", { x1: pad, x2: width - 5, y1: y(value), y2: y(value), stroke: color, "stroke-dasharray": "4 4", opacity: 0.6, class: `threshold threshold-${key}` });
    if (same && key === "memory") continue; // one label says both
    const label = same ? `CPU and memory threshold ${value} %` : `${name} threshold ${value} %`;
    const below = close && !same && key === "memory"; // two near lines: one label above, one below
    labels.push([{ x: width - 8, y: below ? y(value) + 11 : y(value) - 3, "font-size": 9, fill: same ? "#475467" : color, "text-anchor": "end", class: `threshold-label-${key}` }, label]);
  }
  // Labels last, so no shading or line is drawn over them.
  const drawLabels = () => { for (const [attrs, text] of labels) add("text", attrs).textContent = text; };
  if (!items.length) {
    add("text", { x: width / 2 - 60, y: height / 2, fill: "#667085" }).textContent = "No data in this range yet";
    drawLabels();
    return svg;
  }
  const times = items.map((p) => Date.parse(p.timestamp));
  const spacings = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  const usual = spacings.length ? spacings[Math.floor(spacings.length / 2)] : 0;
  const gap = Math.max(usual * 2.5, 1);
  // Stopped periods: shaded, from a sample that was not running to the next sample.
  items.forEach((p, i) => {
    if (p.status && p.status !== "running") {
      const end = i + 1 < times.length ? times[i + 1] : Math.min(t1, times[i] + usual);
      add("rect", { x: x(times[i]), y: pad, width: Math.max(1, x(end) - x(times[i])), height: height - 2 * pad, fill: "#eef0f3", class: "stopped" });
    }
  });
  for (const [key, color, cls, name] of [["cpu_utilization", "#2563eb", "cpu", "CPU"], ["memory_utilization", "#9333ea", "mem", "memory"]]) {
    let segment = [];
    const segments = [segment];
    items.forEach((p, i) => {
      const v = p[key];
      const broken = v === null || v === undefined || (segment.length && times[i] - segment[segment.length - 1][0] > gap);
      if (broken && segment.length) segments.push((segment = []));
      if (v !== null && v !== undefined) segment.push([times[i], v]);
    });
    for (const part of segments.filter((points) => points.length)) {
      add("polyline", { points: part.map(([t, v]) => `${x(t)},${y(v)}`).join(" "), fill: "none", stroke: color, "stroke-width": 2, class: `line ${cls}` });
      for (const [t, v] of items.length <= 300 ? part : []) {
        const dot = add("circle", { cx: x(t), cy: y(v), r: 2.5, fill: color, class: `point ${cls}` });
        add("title", {}, dot).textContent = `${new Date(t).toLocaleString()}: ${name} ${v.toFixed(1)} %`;
      }
    }
  }
  drawLabels();
  return svg;
}
