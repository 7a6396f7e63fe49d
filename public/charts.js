// socketswarm charts: thin glue between the pages (Rust/wasm builds a spec) and uPlot.
// render(el, specJson) draws or updates one chart; a chart whose series set is
// unchanged is updated in place (setData), so live runs redraw cheaply every tick.
(function () {
  'use strict';
  var plots = new WeakMap();

  // Time charts' legends show the latest values while the cursor is off the plot
  // (uPlot's own legend reads "--" until hovered).
  function showLatest(u) {
    var n = u.data && u.data[0] ? u.data[0].length : 0;
    if (u.cursor.idx == null && n > 0) u.setLegend({ idx: n - 1 }, false);
  }

  // Vertical dashed markers with their labels (a run's steering changes), drawn over
  // the plot; labels alternate between two rows so close changes stay readable.
  function drawMarks(marks) {
    return function (u) {
      if (!marks || !marks.length) return;
      var ctx = u.ctx, px = window.devicePixelRatio || 1;
      var top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
      var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
      ctx.save();
      ctx.font = Math.round(11 * px) + 'px system-ui, sans-serif';
      marks.forEach(function (m, i) {
        var x = Math.round(u.valToPos(m.x, 'x', true));
        if (x < left || x > right) return;
        ctx.strokeStyle = '#6b46c1';
        ctx.lineWidth = 1.5 * px;
        ctx.setLineDash([4 * px, 3 * px]);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
        var w = ctx.measureText(m.label).width;
        var tx = x + 4 * px + w > right ? x - 4 * px - w : x + 4 * px;
        var ty = top + (12 + (i % 2) * 14) * px;
        ctx.fillStyle = 'rgba(255,255,255,0.85)';
        ctx.fillRect(tx - 2 * px, ty - 10 * px, w + 4 * px, 13 * px);
        ctx.fillStyle = '#44337a';
        ctx.fillText(m.label, tx, ty);
      });
      ctx.restore();
    };
  }

  function options(spec, width) {
    var labels = spec.x_labels && spec.x_labels.length ? spec.x_labels : null;
    var bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 64] }) : undefined;
    return {
      width: width,
      height: spec.height || 220,
      legend: { show: true, live: true },
      hooks: labels ? {} : { ready: [showLatest], setData: [showLatest], setCursor: [showLatest], draw: [drawMarks(spec.marks)] },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: [
        {
          label: spec.x_label || 'elapsed (s)', stroke: '#5f6b7d', grid: { stroke: '#eef2f8' },
          values: labels ? function (u, splits) {
            return splits.map(function (i) { return labels[i] === undefined ? '' : labels[i]; });
          } : undefined,
        },
        { label: spec.y_label, size: 64, stroke: '#5f6b7d', grid: { stroke: '#eef2f8' } },
      ],
      series: [labels ? {
        label: 'bucket',
        value: function (u, i) { return i == null || labels[i] === undefined ? '--' : labels[i]; },
      } : { label: 't (s)' }].concat(spec.series.map(function (s) {
        return {
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: s.fill ? s.color + '66' : undefined,
          dash: s.dash ? [6, 4] : undefined,
          paths: s.bars ? bars : undefined,
          spanGaps: true,
          points: { show: false },
        };
      })),
    };
  }

  function render(el, specJson) {
    if (typeof uPlot === 'undefined') return;
    var spec = JSON.parse(specJson);
    // -0 (a difference of equal counts) reads as 0 in the legend.
    var data = [spec.x].concat(spec.series.map(function (s) {
      return s.values.map(function (v) { return v === 0 ? 0 : v; });
    }));
    // New markers redraw the chart (its draw hook holds them).
    var key = spec.series.map(function (s) { return s.label; }).join('|') +
      '#' + (spec.marks || []).map(function (m) { return m.x + m.label; }).join('|');
    el.setAttribute('data-marks', String((spec.marks || []).length));
    var have = plots.get(el);
    if (have && have.key === key) { have.plot.setData(data); return; }
    if (have) have.plot.destroy();
    var plot = new uPlot(options(spec, Math.max(el.clientWidth, 320)), data, el);
    plots.set(el, { plot: plot, key: key });
  }

  window.addEventListener('resize', function () {
    document.querySelectorAll('.chart__plot').forEach(function (el) {
      var have = plots.get(el);
      if (have) have.plot.setSize({ width: Math.max(el.clientWidth, 320), height: have.plot.height });
    });
  });

  window.socketswarmCharts = { render: render };
})();
