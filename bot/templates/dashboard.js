// reviewbot dashboard: draws the weekly acceptance chart as inline SVG from GET /api/projects/{id}/stats.
// No library, no build step, no network beyond this origin. Text goes in through textContent only.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // dashboard.css gives the scale `left` and the plot `width - left` of the chart's width: change both together
  const SIZE = { width: 760, height: 270, left: 44, right: 12, top: 22, bottom: 46 };

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(rate) {
    return Math.round(rate * 100) + "%";
  }

  function dayMonth(isoDate) {
    const [, month, day] = isoDate.split("-").map(Number);
    return day + " " + MONTHS[month - 1];
  }

  // The percentage labels go in `scale`, the lines in `svg`: on a phone the plot scrolls sideways and the
  // scale, in a column of its own (the stylesheet's `.chart[data-state="drawn"]`), stays in view.
  function grid(scale, svg, plot) {
    for (const level of [0, 0.25, 0.5, 0.75, 1]) {
      const y = plot.top + plot.height * (1 - level);
      svg.append(el("line", { class: "grid", x1: plot.left, x2: plot.left + plot.width, y1: y, y2: y }));
      scale.append(el("text", { class: "axis", x: plot.left - 6, y: y + 4, "text-anchor": "end" }, percent(level)));
    }
  }

  function week(svg, plot, point, index, slot) {
    const barWidth = Math.max(4, slot * 0.62);
    const x = plot.left + index * slot + (slot - barWidth) / 2;
    const middle = x + barWidth / 2;
    const base = plot.top + plot.height;
    const label = el("text", { class: "axis", x: middle, y: base + 16, "text-anchor": "middle" }, dayMonth(point.week));
    const answered = point.suggested - (point.pending || 0);  // the rate leaves out MRs nobody answered yet
    svg.append(label, el("text", { class: "count", x: middle, y: base + 30 }, point.accepted + "/" + answered));
    if (point.rate === null) {
      svg.append(el("rect", { class: "empty", x: x, y: base - 2, width: barWidth, height: 2 }));
      return 0;
    }
    const height = Math.max(point.rate * plot.height, 1);
    const bar = el("rect", { class: "bar", x: x, y: base - height, width: barWidth, height: height, rx: 2 });
    const waiting = point.pending ? "; " + point.pending + " awaiting the team" : "";
    bar.append(el("title", {}, "Week of " + point.week + ": " + point.accepted + " of " + answered +
      " merge requests the team responded to took a suggested reviewer (" + percent(point.rate) + ")" + waiting));
    svg.append(bar, el("text", { class: "value", x: middle, y: base - height - 5 }, percent(point.rate)));
    return 1;
  }

  function draw(holder, weeks) {
    const plot = {
      left: SIZE.left, top: SIZE.top,
      width: SIZE.width - SIZE.left - SIZE.right, height: SIZE.height - SIZE.top - SIZE.bottom,
    };
    // one drawing cut in two at the plot's left edge, each half keeping the coordinates of the whole
    const scale = el("svg", { viewBox: "0 0 " + SIZE.left + " " + SIZE.height, class: "scale", "aria-hidden": "true" });
    const svg = el("svg", {
      viewBox: SIZE.left + " 0 " + (SIZE.width - SIZE.left) + " " + SIZE.height, role: "img", id: "acceptance-svg",
      "aria-label": "Share of merge requests per week where a suggested person reviewed or approved",
      "aria-describedby": "acceptance-legend",
    });
    grid(scale, svg, plot);
    const slot = plot.width / Math.max(weeks.length, 1);
    let bars = 0;
    weeks.forEach(function (point, index) { bars += week(svg, plot, point, index, slot); });
    const scroller = document.createElement("div");
    scroller.className = "plot";
    scroller.append(svg);
    holder.replaceChildren(scale, scroller);
    holder.dataset.state = "drawn";  // before scrolling: the layout that makes the plot scroll hangs on it
    scroller.scrollLeft = scroller.scrollWidth;  // a phone scrolls the plot sideways: start at the newest week
    holder.dataset.bars = String(bars);
    const numbers = document.getElementById("acceptance-numbers");
    if (numbers) numbers.open = false;  // open for a browser without JavaScript; the chart shows them now
  }

  function load(holder) {
    holder.dataset.state = "loading";  // set here, not in the page: without JavaScript no box waits for a chart
    holder.textContent = "Drawing the chart…";
    fetch(holder.dataset.stats, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.json();
      })
      .then(function (stats) { draw(holder, stats.weeks); })
      .catch(function (error) {
        holder.textContent = "Could not draw the chart: " + error.message + ". Reload the page to try again.";
        holder.dataset.state = "error";
      });
  }

  const holder = document.getElementById("acceptance-chart");
  if (holder && holder.dataset.stats) load(holder);
})();
