// The vhr page: upload line images or write one on the pad, and show the recognised text,
// each character coloured by its confidence. Talks only to this server's /v1 API.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("vhr-token") || "";

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  function status(msg) { $("status").textContent = msg || ""; }

  async function api(path, options) {
    const res = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.status === 401) { $("token-row").hidden = false; }
    if (!res.ok) {
      const msg = body && body.error ? body.error.message : ("HTTP " + res.status);
      throw new Error(msg);
    }
    return body;
  }

  function confidenceClass(c) { return c >= 0.9 ? "c-high" : (c >= 0.6 ? "c-mid" : "c-low"); }

  function renderResult(li, result) {
    const text = document.createElement("div");
    text.className = "text";
    if (result.chars && result.chars.length === [...result.text].length) {
      for (const c of result.chars) {
        const span = document.createElement("span");
        span.textContent = c.char;
        span.className = confidenceClass(c.confidence);
        const x = c.x_original || c.x;
        span.title = "confidence " + c.confidence.toFixed(3) + " · x " + x[0] + "–" + x[1] + " px";
        text.appendChild(span);
      }
    } else {
      text.textContent = result.text;
    }
    if (!result.text) { text.textContent = "(no text)"; text.classList.add("muted"); }
    text.dataset.text = result.text;
    li.appendChild(text);
    const meta = document.createElement("div");
    meta.className = "meta";
    const conf = document.createElement("span");
    conf.textContent = "confidence " + result.confidence.toFixed(3);
    const ms = document.createElement("span");
    ms.className = "ms";
    ms.textContent = result.ms.toFixed(1) + " ms/line";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "copy text";
    copy.addEventListener("click", () => copyText(result.text, copy));
    meta.append(conf, ms, copy);
    li.appendChild(meta);
    li.classList.add("done");
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {  // no clipboard permission (plain http on another host): select it instead
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); } catch (e2) { /* nothing more to try */ }
      area.remove();
    }
    button.textContent = "copied";
    setTimeout(() => { button.textContent = "copy text"; }, 1200);
  }

  function showError(li, message) {
    const p = document.createElement("div");
    p.className = "error";
    p.textContent = message;
    li.appendChild(p);
    li.classList.add("done", "failed");
  }

  async function uploadFiles(files) {
    const list = $("upload-results");
    const images = [...files].filter((f) => f.size > 0);
    if (!images.length) return;
    const items = images.map((file) => {
      const li = document.createElement("li");
      const img = document.createElement("img");
      img.alt = file.name;
      img.src = URL.createObjectURL(file);
      li.appendChild(img);
      list.prepend(li);
      return li;
    });
    status("Recognising " + images.length + " line(s)…");
    // One request per image: a bad file answers its own error and the others still read.
    await Promise.all(images.map(async (file, i) => {
      const form = new FormData();
      form.append("files", file, file.name);
      try {
        const body = await api("/v1/recognize", { method: "POST", body: form });
        renderResult(items[i], body.results[0]);
      } catch (e) {
        showError(items[i], file.name + ": " + e.message);
      }
    }));
    status("");
  }

  function setupUpload() {
    const drop = $("drop");
    $("files").addEventListener("change", (e) => { uploadFiles(e.target.files); e.target.value = ""; });
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files) uploadFiles(e.dataTransfer.files);
    });
  }

  function setupPad() {
    const pad = $("pad");
    const ctx = pad.getContext("2d");
    let drawing = null;
    let strokes = 0;
    function clear() {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, pad.width, pad.height);
      strokes = 0;
    }
    function point(e) {
      const r = pad.getBoundingClientRect();
      return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
    }
    pad.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      pad.setPointerCapture(e.pointerId);
      drawing = { id: e.pointerId, last: point(e) };
      strokes += 1;
    });
    pad.addEventListener("pointermove", (e) => {
      if (!drawing || drawing.id !== e.pointerId) return;
      const p = point(e);
      const pressure = e.pointerType === "pen" && e.pressure > 0 ? e.pressure : 0.5;
      ctx.strokeStyle = "#111";
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = 3 + 5 * pressure;
      ctx.beginPath();
      ctx.moveTo(drawing.last[0], drawing.last[1]);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
      drawing.last = p;
    });
    const end = (e) => { if (drawing && drawing.id === e.pointerId) drawing = null; };
    pad.addEventListener("pointerup", end);
    pad.addEventListener("pointercancel", end);
    $("clear").addEventListener("click", clear);
    $("recognise").addEventListener("click", () => {
      if (!strokes) { status("Write something on the pad first."); return; }
      pad.toBlob(async (blob) => {
        const li = document.createElement("li");
        $("draw-results").prepend(li);
        status("Recognising…");
        try {
          const body = await api("/v1/recognize", { method: "POST", body: blob, headers: { "Content-Type": "image/png" } });
          renderResult(li, body.results[0]);
        } catch (e) {
          showError(li, e.message);
        }
        status("");
      }, "image/png");
    });
    clear();
  }

  async function loadModel() {
    try {
      const m = await api("/v1/model");
      $("model-line").textContent = "Model " + m.model_id + " · " + m.format + " on " + m.runtime +
        (m.quantization !== "none" ? " (" + m.quantization + ")" : "") + " · " + m.alphabet.length + " characters";
    } catch (e) {
      $("model-line").textContent = "Model: " + e.message;
    }
  }

  $("token-save").addEventListener("click", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("vhr-token", token);
    $("token-row").hidden = true;
    loadModel();
  });
  setupUpload();
  setupPad();
  loadModel();
})();
