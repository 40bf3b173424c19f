// certrelay console: the expiry timeline (uPlot) and the confirmation
// dialogs. Every page reads without it; nothing here is inline (the
// Content Security Policy allows no inline script).
(function () {
  "use strict";

  var palette = ["#1f5fa8", "#17693a", "#7a3e9d", "#b35900", "#00707a", "#8c2d4a", "#4a5a14", "#5a4a8c"];

  function timeline(root) {
    var el = root.querySelector("#timeline-chart");
    var src = root.querySelector("#timeline-data");
    if (!el || !src || el.dataset.drawn || typeof uPlot === "undefined") {
      return;
    }
    var data = JSON.parse(src.textContent);
    var rows = data.Rows || [];
    if (!rows.length) {
      return;
    }
    el.dataset.drawn = "1";
    var xsSet = {};
    xsSet[data.Now] = true;
    xsSet[data.Now + data.Window] = true;
    rows.forEach(function (r) { xsSet[r.NotBefore] = true; xsSet[r.NotAfter] = true; });
    var xs = Object.keys(xsSet).map(Number).sort(function (a, b) { return a - b; });
    var cols = [xs];
    var series = [{}];
    rows.forEach(function (r, i) {
      var y = rows.length - i;
      cols.push(xs.map(function (x) { return x >= r.NotBefore && x <= r.NotAfter ? y : null; }));
      series.push({
        label: r.Label,
        stroke: r.NotAfter < data.Now ? "#a4161a" : (r.NotAfter < data.Now + data.Window ? "#b35900" : palette[i % palette.length]),
        width: 7,
        spanGaps: false,
        points: { show: true, size: 9 },
        value: function (u, v) { return v == null ? "" : "in use"; }
      });
    });
    function shade(u) {
      var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      var x0 = u.valToPos(data.Now, "x", true), x1 = u.valToPos(data.Now + data.Window, "x", true);
      ctx.save();
      ctx.fillStyle = "rgba(255, 170, 0, 0.18)";
      ctx.fillRect(x0, top, x1 - x0, h);
      ctx.strokeStyle = "#a4161a";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x0, top);
      ctx.lineTo(x0, top + h);
      ctx.stroke();
      ctx.restore();
    }
    var opts = {
      width: Math.max(el.clientWidth || 0, 600),
      height: 80 + rows.length * 26,
      scales: { x: { time: true }, y: { range: [0, rows.length + 1] } },
      axes: [{}, { show: false }],
      cursor: { drag: { x: true, y: false } },
      legend: { live: false },
      hooks: { drawClear: [shade] },
      series: series
    };
    new uPlot(opts, cols, el);
  }

  function dialogs(root) {
    root.querySelectorAll("dialog.confirm[open]").forEach(function (d) {
      if (d.dataset.modal || typeof d.showModal !== "function") {
        return;
      }
      d.dataset.modal = "1";
      d.close();
      d.showModal();
    });
  }

  function init(root) {
    timeline(root);
    dialogs(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (ev) { init(document); });
})();
