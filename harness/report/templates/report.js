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

  // ---- where two models differ: the rows live in JSON beside the table; a page of them is drawn at a time
  const PAGE = 25;
  document.querySelectorAll(".differ").forEach(function (block) {
    const rows = JSON.parse(block.querySelector("script[type='application/json']").textContent);
    const body = block.querySelector("tbody");
    const search = block.querySelector("input[type=search]");
    const side = block.querySelector("select");
    const count = block.querySelector(".count");
    const state = { key: 6, descending: true, page: 0 };

    function shown() {
      const query = search.value.trim().toLowerCase();
      const wanted = side.value;
      const kept = rows.filter(function (row) {
        return (wanted === "" || row[3] === wanted) && (query === "" || (row[0] + " " + row[1]).toLowerCase().includes(query));
      });
      kept.sort(function (a, b) {
        const x = a[state.key], y = b[state.key];
        if (x === null || y === null) return (x === null) - (y === null);
        const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return state.descending ? -order : order;
      });
      return kept;
    }

    function draw() {
      const kept = shown();
      const pages = Math.max(1, Math.ceil(kept.length / PAGE));
      state.page = Math.min(state.page, pages - 1);
      body.replaceChildren();
      kept.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (row) {
        const tr = document.createElement("tr");
        row.forEach(function (value, index) {
          const td = document.createElement("td");
          td.className = index >= 4 ? "num" : "text";
          td.textContent = value === null ? "" : index >= 4 ? value.toFixed(3) : String(value);
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      count.textContent = kept.length + " rows, page " + (state.page + 1) + " of " + pages;
      block.querySelector(".prev").disabled = state.page === 0;
      block.querySelector(".next").disabled = state.page >= pages - 1;
    }

    search.addEventListener("input", function () { state.page = 0; draw(); });
    side.addEventListener("change", function () { state.page = 0; draw(); });
    block.querySelector(".prev").addEventListener("click", function () { state.page -= 1; draw(); });
    block.querySelector(".next").addEventListener("click", function () { state.page += 1; draw(); });
    block.querySelectorAll("thead th").forEach(function (th) {
      th.tabIndex = 0;
      th.addEventListener("click", function () {
        const key = Number(th.getAttribute("data-key"));
        state.descending = key === state.key ? !state.descending : key >= 4;
        state.key = key;
        block.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", state.descending ? "descending" : "ascending");
        draw();
      });
    });
    draw();
  });

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
