// Draws the metric page's Bokeh chart. The figure (built once per unit by the server, with
// empty data sources) and this page's readings arrive as data in JSON blocks, so the page
// runs no inline script and its Content-Security-Policy can forbid them.
(function () {
  "use strict";
  var itemBlock = document.getElementById("chart-item");
  var dataBlock = document.getElementById("chart-data");
  var target = document.getElementById("chart");
  if (!itemBlock || !dataBlock || !target || !window.Bokeh) {
    return;
  }

  // JSON has no NaN: undefined statistics come as null, which BokehJS must see as NaN (a gap).
  function entries(raw) {
    return Object.keys(raw).map(function (name) {
      return [name, raw[name].map(function (v) { return v === null ? NaN : v; })];
    });
  }

  // Put each named source's columns into the figure before it is drawn, so the first render
  // already has its data and ranges (Bokeh's document format: a dict is {type: "map", entries}).
  function fill(node, sources, filled) {
    if (Array.isArray(node)) {
      node.forEach(function (child) { fill(child, sources, filled); });
    } else if (node !== null && typeof node === "object") {
      var attributes = node.attributes;
      if (node.name === "ColumnDataSource" && attributes && sources[attributes.name]) {
        attributes.data = { type: "map", entries: entries(sources[attributes.name]) };
        filled.push(attributes.name);
        return;
      }
      Object.keys(node).forEach(function (key) { fill(node[key], sources, filled); });
    }
  }

  var item = JSON.parse(itemBlock.textContent);
  var sources = JSON.parse(dataBlock.textContent);
  var filled = [];
  fill(item.doc, sources, filled);
  if (filled.length !== Object.keys(sources).length) {
    console.error("officesensor: the chart has no source for some data:", filled);
  }
  window.Bokeh.embed.embed_item(item).then(function () {
    target.setAttribute("data-ready", "true");
  });
})();
