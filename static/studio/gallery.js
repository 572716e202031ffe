// The gallery page's behaviour on top of plain HTML that already works without it:
// - blurhash placeholders drawn behind thumbnails that are still loading (the server already paints
//   the average colour);
// - selection: a count, shift-click ranges, select all / clear, the bulk bar's buttons enabled only
//   with a selection, and "Download" posted as a normal form so the browser saves the file;
// - the lightbox: click a tile to open, ←/→ to step (loading the next page at the end), Esc to close,
//   zoom with the wheel, a pinch or a double-click (and +/-/0), drag to pan, swipe to step on touch.
(function () {
  "use strict";

  // --- blurhash (the published algorithm: base 83, a DC term and cosine AC terms in linear RGB) ----

  const B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

  function decode83(text) {
    let value = 0;
    for (const char of text) {
      const digit = B83.indexOf(char);
      if (digit < 0) throw new Error("not a blurhash");
      value = value * 83 + digit;
    }
    return value;
  }

  const toLinear = (v) => { const x = v / 255; return x <= 0.04045 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); };
  const toSrgb = (v) => {
    const x = Math.max(0, Math.min(1, v));
    return Math.round((x <= 0.0031308 ? x * 12.92 : 1.055 * Math.pow(x, 1 / 2.4) - 0.055) * 255);
  };
  const signPow = (v, e) => Math.sign(v) * Math.pow(Math.abs(v), e);

  function blurhashPixels(hash, width, height) {
    const size = decode83(hash[0]);
    const nx = (size % 9) + 1, ny = Math.floor(size / 9) + 1;
    if (hash.length !== 4 + 2 * nx * ny) throw new Error("not a blurhash");
    const maximum = (decode83(hash[1]) + 1) / 166;
    const colours = [];
    for (let i = 0; i < nx * ny; i++) {
      if (i === 0) {
        const dc = decode83(hash.substring(2, 6));
        colours.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
      } else {
        const ac = decode83(hash.substring(4 + i * 2, 6 + i * 2));
        colours.push([Math.floor(ac / 361), Math.floor(ac / 19) % 19, ac % 19]
          .map((q) => signPow((q - 9) / 9, 2) * maximum));
      }
    }
    const pixels = new Uint8ClampedArray(width * height * 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let r = 0, g = 0, b = 0;
        for (let j = 0; j < ny; j++) {
          const by = Math.cos((Math.PI * y * j) / height);
          for (let i = 0; i < nx; i++) {
            const basis = Math.cos((Math.PI * x * i) / width) * by;
            const c = colours[i + j * nx];
            r += c[0] * basis; g += c[1] * basis; b += c[2] * basis;
          }
        }
        const o = 4 * (x + y * width);
        pixels[o] = toSrgb(r); pixels[o + 1] = toSrgb(g); pixels[o + 2] = toSrgb(b); pixels[o + 3] = 255;
      }
    }
    return pixels;
  }

  const painted = new Map();

  function blurhashUrl(hash) {
    if (!painted.has(hash)) {
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = 32;
      const ctx = canvas.getContext("2d");
      const image = ctx.createImageData(32, 32);
      image.data.set(blurhashPixels(hash, 32, 32));
      ctx.putImageData(image, 0, 0);
      painted.set(hash, canvas.toDataURL());
    }
    return painted.get(hash);
  }

  function paintPlaceholders(root) {
    root.querySelectorAll(".tile-media[data-blurhash]").forEach((media) => {
      const img = media.querySelector("img");
      if (!img || (img.complete && img.naturalWidth)) return;  // already there: nothing to hold its place
      try {
        media.style.backgroundImage = `url(${blurhashUrl(media.dataset.blurhash)})`;
      } catch (error) {
        // A malformed hash keeps the server's average colour.
      }
    });
  }

  // --- selection ---------------------------------------------------------------------------------

  const form = () => document.getElementById("bulk-form");
  const boxes = () => Array.from(document.querySelectorAll("input.tile-select"));
  let lastBox = null;
  let shiftHeld = false;

  function updateSelection() {
    const all = boxes();
    const count = all.filter((box) => box.checked).length;
    all.forEach((box) => box.closest(".tile")?.classList.toggle("is-selected", box.checked));
    const bulk = form();
    if (!bulk) return;
    const label = bulk.querySelector("[data-bulk-count]");
    if (label) label.textContent = count ? `${count} selected` : "Select assets to act on them";
    bulk.querySelectorAll(".bulk-actions button").forEach((button) => { button.disabled = count === 0; });
    const none = bulk.querySelector("[data-select-none]");
    if (none) none.hidden = count === 0;
    const every = bulk.querySelector("[data-select-all]");
    if (every) every.hidden = all.length === 0 || count === all.length;
    document.body.classList.toggle("has-selection", count > 0);
  }

  // Shift is read from the last key or pointer event: a click on the checkbox's label reaches the
  // checkbox as a synthetic click without the modifier.
  document.addEventListener("keydown", (e) => { shiftHeld = e.shiftKey; });
  document.addEventListener("keyup", (e) => { shiftHeld = e.shiftKey; });
  document.addEventListener("pointerdown", (e) => { shiftHeld = e.shiftKey; }, true);

  document.addEventListener("change", (e) => {
    const box = e.target.closest && e.target.closest("input.tile-select");
    if (!box) return;
    const all = boxes();
    if (shiftHeld && lastBox && all.includes(lastBox)) {
      const [from, to] = [all.indexOf(lastBox), all.indexOf(box)].sort((a, b) => a - b);
      for (let i = from; i <= to; i++) all[i].checked = box.checked;
    }
    lastBox = box;
    updateSelection();
  });

  function setAll(checked) {
    boxes().forEach((box) => { box.checked = checked; });
    lastBox = null;
    updateSelection();
  }

  // "Download" leaves htmx out: the export answers with a file, which the browser saves.
  function download(button) {
    const bulk = form();
    const post = document.createElement("form");
    post.method = "post";
    post.action = button.formAction;
    const add = (name, value) => {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = value;
      post.appendChild(input);
    };
    add("csrfmiddlewaretoken", bulk.querySelector("[name=csrfmiddlewaretoken]").value);
    add("action", "download");
    add("next", bulk.querySelector("[name=next]").value);
    boxes().filter((box) => box.checked).forEach((box) => add("assets", box.value));
    document.body.appendChild(post);
    post.submit();
    post.remove();
  }

  document.addEventListener("click", (e) => {
    if (e.target.closest("[data-select-all]")) setAll(true);
    else if (e.target.closest("[data-select-none]")) setAll(false);
    else {
      const button = e.target.closest("[data-bulk-download]");
      if (button) { e.preventDefault(); download(button); }
    }
  });

  // --- lightbox ----------------------------------------------------------------------------------

  const MAX_ZOOM = 8;
  let box, stage, img, icon, index = -1, pendingStep = null;
  let scale = 1, tx = 0, ty = 0;
  const pointers = new Map();
  let pinch = null, moved = false, swipeStart = null, downOnBackdrop = false;

  const tiles = () => Array.from(document.querySelectorAll("#gallery-items > .tile"));
  const $ = (name) => box.querySelector(`[data-lb-${name}]`);

  function applyZoom() {
    img.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    $("zoom").textContent = `${Math.round(scale * 100)}%`;
    stage.classList.toggle("is-zoomed", scale > 1);
  }

  function resetZoom() { scale = 1; tx = 0; ty = 0; applyZoom(); }

  // Zoom to `next` keeping the point under (cx, cy) where it is. With transform-origin 0 0 the
  // image's box on screen starts at its layout position plus the translation.
  function zoomAt(next, cx, cy) {
    next = Math.max(1, Math.min(MAX_ZOOM, next));
    const r = img.getBoundingClientRect();
    const px = (cx - r.left) / scale, py = (cy - r.top) / scale;
    const left = r.left - tx, top = r.top - ty;
    tx = cx - left - px * next;
    ty = cy - top - py * next;
    scale = next;
    if (scale === 1) { tx = 0; ty = 0; }
    applyZoom();
  }

  function zoomCentre(factor) {
    const r = stage.getBoundingClientRect();
    zoomAt(scale * factor, r.left + r.width / 2, r.top + r.height / 2);
  }

  function show(i) {
    const list = tiles();
    if (i < 0 || i >= list.length) return;
    index = i;
    const tile = list[i], data = tile.dataset;
    resetZoom();
    if (data.full) {
      img.hidden = false; icon.hidden = true;
      img.alt = data.name;
      img.onerror = () => {  // a thumbnail being remade: fall back to the original image
        if (data.original && !img.src.endsWith(data.original)) img.src = data.original;
      };
      img.src = data.full;
    } else {
      img.hidden = true; img.removeAttribute("src");
      icon.hidden = false; icon.textContent = data.icon || "📦";
    }
    $("name").textContent = data.name;
    $("prompt").textContent = data.prompt || "";
    $("tags").textContent = data.tags ? data.tags.split(", ").map((t) => `#${t}`).join(" ") : "";
    $("link").href = data.href;
    $("download").href = data.download;
    $("download").setAttribute("download", data.name);
    // A button that is about to be disabled would drop the focus to <body>, outside the dialog, and
    // its keys (arrows, zoom) with it: the dialog itself takes the focus instead.
    const atStart = i === 0, atEnd = i === list.length - 1 && !document.querySelector("[data-load-more]");
    if ((atStart && document.activeElement === $("prev")) || (atEnd && document.activeElement === $("next"))) {
      box.focus();
    }
    $("prev").disabled = atStart;
    $("next").disabled = atEnd;
    const neighbour = list[i + 1];
    if (neighbour && neighbour.dataset.full) new Image().src = neighbour.dataset.full;
  }

  function step(delta) {
    const target = index + delta;
    if (target >= tiles().length) {
      const more = document.querySelector("[data-load-more]");
      if (more) { pendingStep = target; more.click(); }
      return;
    }
    show(target);
  }

  function openAt(i) {
    show(i);
    if (!box.open) box.showModal();
  }

  function close() {
    if (box.open) box.close();
  }

  function setUpLightbox() {
    box = document.getElementById("lightbox");
    if (!box || typeof box.showModal !== "function") return;  // old browser: tiles stay links
    stage = $("stage"); img = $("img"); icon = $("icon");

    document.addEventListener("click", (e) => {
      const link = e.target.closest(".tile-link");
      if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      const i = tiles().indexOf(link.closest(".tile"));
      if (i < 0) return;
      e.preventDefault();
      openAt(i);
    });
    $("close").addEventListener("click", close);
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    box.addEventListener("close", () => {
      resetZoom();
      tiles()[index]?.querySelector(".tile-link")?.focus({ preventScroll: false });
    });
    box.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
      else if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
      else if (e.key === "+" || e.key === "=") zoomCentre(1.5);
      else if (e.key === "-") zoomCentre(1 / 1.5);
      else if (e.key === "0") resetZoom();
    });

    stage.addEventListener("wheel", (e) => {
      if (img.hidden) return;
      e.preventDefault();
      zoomAt(scale * Math.exp(-e.deltaY * 0.002), e.clientX, e.clientY);
    }, { passive: false });
    stage.addEventListener("dblclick", (e) => {
      if (!img.hidden) zoomAt(scale > 1 ? 1 : 2.5, e.clientX, e.clientY);
    });
    stage.addEventListener("pointerdown", (e) => {
      downOnBackdrop = e.target === stage;  // read before the capture retargets what follows to the stage
      stage.setPointerCapture(e.pointerId);
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      moved = false;
      if (pointers.size === 1) swipeStart = { x: e.clientX, y: e.clientY };
      if (pointers.size === 2) {
        const [a, b] = Array.from(pointers.values());
        pinch = { distance: Math.hypot(a.x - b.x, a.y - b.y), scale, mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
        swipeStart = null;
      }
    });
    stage.addEventListener("pointermove", (e) => {
      const last = pointers.get(e.pointerId);
      if (!last) return;
      const current = { x: e.clientX, y: e.clientY };
      pointers.set(e.pointerId, current);
      if (Math.hypot(current.x - (swipeStart?.x ?? current.x), current.y - (swipeStart?.y ?? current.y)) > 6) moved = true;
      if (pointers.size === 2 && pinch) {
        const [a, b] = Array.from(pointers.values());
        const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
        tx += mid.x - pinch.mid.x; ty += mid.y - pinch.mid.y;  // two fingers moving together pan
        pinch.mid = mid;
        zoomAt(pinch.scale * Math.hypot(a.x - b.x, a.y - b.y) / pinch.distance, mid.x, mid.y);
        moved = true;
      } else if (pointers.size === 1 && scale > 1) {
        tx += current.x - last.x; ty += current.y - last.y;
        applyZoom();
      }
    });
    const release = (e) => {
      pointers.delete(e.pointerId);
      if (pointers.size < 2) pinch = null;
      if (pointers.size === 0 && swipeStart && scale === 1) {
        const dx = e.clientX - swipeStart.x, dy = e.clientY - swipeStart.y;
        if (Math.abs(dx) > 60 && Math.abs(dx) > 2 * Math.abs(dy)) step(dx < 0 ? 1 : -1);
      }
      if (pointers.size === 0) swipeStart = null;
    };
    stage.addEventListener("pointerup", release);
    stage.addEventListener("pointercancel", release);
    // A click on the dark area around the image (not after a drag) closes the viewer.
    stage.addEventListener("click", () => { if (downOnBackdrop && !moved) close(); });
  }

  // --- wiring ------------------------------------------------------------------------------------

  function ready() {
    document.documentElement.classList.add("gallery-js");
    const bulk = form();
    bulk?.querySelectorAll("[data-select-all], [data-select-none]").forEach((b) => { b.hidden = false; });
    paintPlaceholders(document);
    setUpLightbox();
    updateSelection();
  }

  // The filter bar pushes its URL; the bulk bar comes back to it (and so does a refused download).
  document.addEventListener("htmx:pushedIntoHistory", () => {
    const next = form()?.querySelector("[name=next]");
    if (next) next.value = location.pathname + location.search;
  });
  document.addEventListener("htmx:load", (e) => paintPlaceholders(e.detail.elt.parentNode || document));
  document.addEventListener("htmx:afterSettle", () => {
    updateSelection();
    if (pendingStep !== null && box && box.open) {
      const target = pendingStep;
      pendingStep = null;
      if (target < tiles().length) show(target);
      else show(index);  // nothing more came: refresh the buttons
    }
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
