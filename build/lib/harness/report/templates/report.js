(function () {
  "use strict";

  // ---- sortable tables: click (or Enter on) a header; numbers compare as numbers, empty cells last
  function cellValue(row, index) {
    const cell = row.cells[index];
    if (!cell) return null;
    const raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") return null;
    const number = Number(raw);
    return Number.isFinite(number) ? number : raw.toLowerCase();
  }

  function sortTable(table, header, index) {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = cellValue(a, index), y = cellValue(b, index);
      if (x === null || y === null) return (x === null) - (y === null);
      const order = typeof x === "number" && typeof y === "number"
        ? x - y
        : String(x).localeCompare(String(y), undefined, { numeric: true });
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, index) {
      th.tabIndex = 0;
      th.title = th.title || "sort";
      th.addEventListener("click", function () { sortTable(table, th, index); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, th, index); }
      });
    });
  });

  // ---- plots: figure specs come from FIGURES (JSON written by the report)
  function draw(div) {
    const figure = FIGURES[div.getAttribute("data-figure")];
    if (!figure || typeof Plotly === "undefined") return;
    Plotly.newPlot(div, figure.data, figure.layout, {
      responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"],
    });
  }
  document.querySelectorAll("[data-figure]").forEach(draw);

  // ---- task filter: show one task's sections (and rows) or all
  const buttons = document.querySelectorAll(".filter button");
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      const wanted = button.getAttribute("data-filter");
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      document.querySelectorAll("[data-task]").forEach(function (element) {
        element.hidden = wanted !== "" && element.getAttribute("data-task") !== wanted;
        if (!element.hidden && typeof Plotly !== "undefined") {
          element.querySelectorAll(".js-plotly-plot").forEach(function (plot) { Plotly.Plots.resize(plot); });
        }
      });
    });
  });
})();
