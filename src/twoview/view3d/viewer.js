// twoview 3D view: a small WebGL 1 viewer for the scene embedded in #tv-data (twoview.view3d, MIT).
// Orbit / pan / zoom with mouse, wheel and touch; layers toggled from the panel.
// The page exposes window.twoviewScene (layers, counts, view state) for tests and scripts.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("tv-data").textContent);
  var canvas = document.getElementById("tv-canvas");
  var errBox = document.getElementById("tv-errors");

  function bytes(b64) {
    var bin = atob(b64), n = bin.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function floats(b64) { var b = bytes(b64); return new Float32Array(b.buffer, 0, b.length / 4); }

  // --- 4x4 column-major matrices ---------------------------------------------------------
  function perspective(fovy, aspect, near, far) {
    var f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
  }
  function sub(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
  function unit(a) { var n = Math.sqrt(dot(a, a)) || 1; return [a[0] / n, a[1] / n, a[2] / n]; }
  function lookAt(eye, target, up) {
    var f = unit(sub(target, eye)), s = unit(cross(f, up)), u = cross(s, f);
    return [s[0], u[0], -f[0], 0, s[1], u[1], -f[1], 0, s[2], u[2], -f[2], 0,
      -dot(s, eye), -dot(u, eye), dot(f, eye), 1];
  }
  function mul(a, b) {
    var o = new Array(16);
    for (var c = 0; c < 4; c++) for (var r = 0; r < 4; r++) {
      var s = 0;
      for (var k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
      o[c * 4 + r] = s;
    }
    return o;
  }

  // --- view state: orbit about a target; the world's up is -y (OpenCV camera 0) -------------
  var UP = [0, -1, 0], FOVY = 50 * Math.PI / 180;
  var home = { target: D.view.center.slice(), yaw: -0.45, pitch: 0.35, dist: 2.6 * D.view.radius };
  var view = { target: home.target.slice(), yaw: home.yaw, pitch: home.pitch, dist: home.dist };
  function eye() {
    var cp = Math.cos(view.pitch);
    return [view.target[0] + view.dist * cp * Math.sin(view.yaw), view.target[1] - view.dist * Math.sin(view.pitch),
      view.target[2] - view.dist * cp * Math.cos(view.yaw)];
  }

  // --- panel ------------------------------------------------------------------------------
  document.title = D.title;
  document.getElementById("tv-title").textContent = D.title;
  var info = document.getElementById("tv-info");
  D.info.forEach(function (row) {
    var tr = info.insertRow(), a = tr.insertCell(), b = tr.insertCell();
    a.textContent = row[0]; b.textContent = row[1];
  });
  var S = window.twoviewScene = {
    title: D.title, layers: [], counts: {}, ready: false, frames: 0, webgl: false, errors: window.twoviewErrors,
    view: view, pointSize: 2, splatScale: 1, colorByView: !!D.color_by_view,
    setVisible: function (name, on) {
      S.layers.forEach(function (l) { if (l.name === name) { l.visible = !!on; l.checkbox.checked = !!on; } });
      redraw();
    },
    resetView: function () {
      view.target = home.target.slice(); view.yaw = home.yaw; view.pitch = home.pitch; view.dist = home.dist; redraw();
    },
  };
  var layersBox = document.getElementById("tv-layers");
  D.layers.forEach(function (L) {
    var lab = document.createElement("label"), cb = document.createElement("input"), sw = document.createElement("span"),
      txt = document.createElement("span"), cnt = document.createElement("span");
    cb.type = "checkbox"; cb.checked = L.visible;
    sw.className = "tv-swatch"; sw.style.background = "rgb(" + L.color.join(",") + ")";
    txt.textContent = L.label; cnt.className = "tv-count"; cnt.textContent = L.count_text;
    lab.appendChild(cb); lab.appendChild(sw); lab.appendChild(txt); lab.appendChild(cnt); layersBox.appendChild(lab);
    var entry = { name: L.name, label: L.label, count: L.count, visible: L.visible, checkbox: cb,
      color: L.color, tintable: L.tintable,
      drawn: { points: 0, lineSegments: 0, images: 0 } };
    cb.addEventListener("change", function () { entry.visible = cb.checked; redraw(); });
    S.layers.push(entry);
    S.counts[L.name] = L.count;
  });
  var panel = document.getElementById("tv-panel");
  document.getElementById("tv-fold").addEventListener("click", function () { panel.classList.toggle("folded"); redraw(); });
  document.getElementById("tv-reset").addEventListener("click", function () { S.resetView(); });
  var sizeInput = document.getElementById("tv-size"), splatInput = document.getElementById("tv-splat");
  sizeInput.addEventListener("input", function () { S.pointSize = +sizeInput.value; redraw(); });
  var tintInput = document.getElementById("tv-tint");
  tintInput.checked = S.colorByView;
  tintInput.addEventListener("change", function () { S.colorByView = tintInput.checked; redraw(); });
  splatInput.addEventListener("input", function () { S.splatScale = +splatInput.value; redraw(); });
  if (!D.layers.some(function (L) { return L.points && L.points.rad; }))
    document.getElementById("tv-splat-row").style.display = "none";

  // --- WebGL --------------------------------------------------------------------------------
  var gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
  if (!gl) {
    errBox.textContent = "WebGL is not available in this browser: the 3D view cannot be drawn.";
    errBox.style.display = "block";
    window.twoviewErrors.push("no WebGL");
    return;
  }
  S.webgl = true;

  function program(vs, fs, attribs) {
    function shader(type, src) {
      var s = gl.createShader(type);
      gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(s));
      return s;
    }
    var p = gl.createProgram();
    gl.attachShader(p, shader(gl.VERTEX_SHADER, vs)); gl.attachShader(p, shader(gl.FRAGMENT_SHADER, fs));
    attribs.forEach(function (a, i) { gl.bindAttribLocation(p, i, a); });
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error("program: " + gl.getProgramInfoLog(p));
    var u = {};
    ["uMVP", "uSize", "uProj", "uRadScale", "uRound", "uTex", "uTint", "uTintMix"].forEach(function (n) { u[n] = gl.getUniformLocation(p, n); });
    return { p: p, u: u };
  }
  // Points (fixed pixel size, or a disc of radius aRad metres in perspective) and lines.
  var prim = program(
    "attribute vec3 aPos; attribute vec3 aCol; attribute float aRad;" +
    "uniform mat4 uMVP; uniform float uSize; uniform float uProj; uniform float uRadScale;" +
    "uniform vec3 uTint; uniform float uTintMix; varying vec3 vCol;" +
    "void main() { vec4 p = uMVP * vec4(aPos, 1.0); gl_Position = p; vCol = mix(aCol, uTint, uTintMix);" +
    " gl_PointSize = aRad > 0.0 ? clamp(2.0 * aRad * uRadScale * uProj / max(p.w, 1e-6), 1.0, 96.0) : uSize; }",
    "precision mediump float; uniform bool uRound; varying vec3 vCol;" +
    "void main() { if (uRound) { vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; }" +
    " gl_FragColor = vec4(vCol, 1.0); }",
    ["aPos", "aCol", "aRad"]);
  var tex = program(
    "attribute vec3 aPos; attribute vec2 aUV; uniform mat4 uMVP; varying vec2 vUV;" +
    "void main() { gl_Position = uMVP * vec4(aPos, 1.0); vUV = aUV; }",
    "precision mediump float; uniform sampler2D uTex; varying vec2 vUV;" +
    "void main() { gl_FragColor = vec4(texture2D(uTex, vUV).rgb, 1.0); }",
    ["aPos", "aUV"]);

  function buffer(data) {
    var b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    return b;
  }
  var pending = 0;
  var gpu = D.layers.map(function (L, i) {
    var g = { entry: S.layers[i] };
    if (L.points) {
      var pp = floats(L.points.pos);
      g.points = { n: pp.length / 3, pos: buffer(pp), col: buffer(bytes(L.points.col)),
        rad: L.points.rad ? buffer(floats(L.points.rad)) : null };
      g.entry.drawn.points = g.points.n;
    }
    if (L.lines) {
      var lp = floats(L.lines.pos);
      g.lines = { n: lp.length / 3, pos: buffer(lp), col: buffer(bytes(L.lines.col)) };
      g.entry.drawn.lineSegments = g.lines.n / 2;
    }
    if (L.image) {
      var c = L.image.corners, q = [0, 1, 2, 0, 2, 3], pos = [], uv = [], uvc = [[0, 0], [1, 0], [1, 1], [0, 1]];
      q.forEach(function (k) { pos.push(c[3 * k], c[3 * k + 1], c[3 * k + 2]); uv.push(uvc[k][0], uvc[k][1]); });
      g.image = { pos: buffer(new Float32Array(pos)), uv: buffer(new Float32Array(uv)), tex: null };
      var img = new Image();
      pending++;
      img.onload = function () {
        var t = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, t);
        gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, img);
        // NPOT textures in WebGL 1: no mipmaps, clamped
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        g.image.tex = t; g.entry.drawn.images = 1;
        loaded();
      };
      img.onerror = function () { window.twoviewErrors.push("image of layer " + L.name + " did not decode"); loaded(); };
      img.src = L.image.src;
    }
    return g;
  });

  function attrib(loc, buf, size, type, normalized) {
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, size, type, normalized, 0, 0);
  }

  // --- drawing --------------------------------------------------------------------------
  var dpr = 1, queued = false;
  function resize() {
    dpr = window.devicePixelRatio || 1;
    var w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  }
  function draw() {
    queued = false;
    resize();
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.083, 0.09, 0.1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    var r = D.view.radius, near = Math.max(view.dist * 1e-3, r * 1e-4), far = view.dist + 50 * r;
    // The view's centre moves to the middle of the area the panel leaves free (an NDC shift).
    var covered = panel.classList.contains("folded") ? 0 : (panel.offsetLeft + panel.offsetWidth) / Math.max(canvas.clientWidth, 1);
    var shift = covered < 0.5 ? covered : 0;
    var P = perspective(FOVY, canvas.width / canvas.height, near, far);
    P[8] += shift * P[11]; // x_clip += shift * w_clip, as w_clip = P[11] * z_eye
    var mvp = new Float32Array(mul(P, lookAt(eye(), view.target, UP)));
    var proj = canvas.height / (2 * Math.tan(FOVY / 2));
    gpu.forEach(function (g) {
      if (!g.entry.visible) return;
      if (g.image && g.image.tex) {
        gl.useProgram(tex.p);
        gl.uniformMatrix4fv(tex.u.uMVP, false, mvp);
        gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, g.image.tex); gl.uniform1i(tex.u.uTex, 0);
        attrib(0, g.image.pos, 3, gl.FLOAT, false);
        attrib(1, g.image.uv, 2, gl.FLOAT, false);
        gl.drawArrays(gl.TRIANGLES, 0, 6);
        gl.disableVertexAttribArray(1);
      }
      gl.useProgram(prim.p);
      gl.uniformMatrix4fv(prim.u.uMVP, false, mvp);
      gl.uniform1f(prim.u.uSize, S.pointSize * dpr);
      gl.uniform1f(prim.u.uProj, proj);
      gl.uniform1f(prim.u.uRadScale, S.splatScale);
      var c = g.entry.color;
      gl.uniform3f(prim.u.uTint, c[0] / 255, c[1] / 255, c[2] / 255);
      gl.uniform1f(prim.u.uTintMix, S.colorByView && g.entry.tintable ? 0.7 : 0);
      [["lines", gl.LINES], ["points", gl.POINTS]].forEach(function (kind) {
        var b = g[kind[0]];
        if (!b) return;
        attrib(0, b.pos, 3, gl.FLOAT, false);
        attrib(1, b.col, 3, gl.UNSIGNED_BYTE, true);
        if (b.rad) attrib(2, b.rad, 1, gl.FLOAT, false);
        else { gl.disableVertexAttribArray(2); gl.vertexAttrib1f(2, 0); }
        gl.uniform1i(prim.u.uRound, kind[1] === gl.POINTS && b.rad ? 1 : 0);
        gl.drawArrays(kind[1], 0, b.n);
      });
      gl.disableVertexAttribArray(1); gl.disableVertexAttribArray(2);
    });
    S.frames++;
  }
  function redraw() { if (!queued) { queued = true; requestAnimationFrame(draw); } }
  function loaded() { if (--pending === 0) finish(); }
  function finish() { draw(); S.ready = true; }

  // Pixels that differ from the background: a test's check that something was drawn.
  S.pixelStats = function () {
    draw();
    var w = canvas.width, h = canvas.height, px = new Uint8Array(w * h * 4), n = 0, sum = 0;
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    for (var i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - 21) + Math.abs(px[i + 1] - 23) + Math.abs(px[i + 2] - 26) > 12) { n++; sum = (sum * 31 + px[i] + 7 * px[i + 1] + 13 * px[i + 2] + i) % 1000000007; }
    }
    return { width: w, height: h, drawn: n, checksum: sum };
  };

  // --- interaction ----------------------------------------------------------------------
  var pointers = new Map(), last = null;
  function pan(dx, dy) {
    var e = eye(), f = unit(sub(view.target, e)), s = unit(cross(f, UP)), u = cross(s, f);
    var k = 2 * Math.tan(FOVY / 2) * view.dist / Math.max(canvas.clientHeight, 1);
    for (var i = 0; i < 3; i++) view.target[i] += (-s[i] * dx + u[i] * dy) * k;
  }
  function orbit(dx, dy) {
    view.yaw += dx * 0.006;
    view.pitch = Math.max(-1.55, Math.min(1.55, view.pitch + dy * 0.006));
  }
  function pinchState() {
    var p = Array.from(pointers.values());
    return { d: Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y), x: (p[0].x + p[1].x) / 2, y: (p[0].y + p[1].y) / 2 };
  }
  canvas.addEventListener("pointerdown", function (e) {
    try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic or already-ended pointer */ }
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.button === 1 || e.shiftKey });
    last = pointers.size === 2 ? pinchState() : null;
  });
  canvas.addEventListener("pointermove", function (e) {
    var p = pointers.get(e.pointerId);
    if (!p) return;
    var dx = e.clientX - p.x, dy = e.clientY - p.y;
    p.x = e.clientX; p.y = e.clientY;
    if (pointers.size === 1) {
      if (p.pan || e.shiftKey) pan(dx, dy); else orbit(dx, dy);
    } else if (pointers.size === 2 && last) {
      var now = pinchState();
      if (now.d > 0 && last.d > 0) view.dist *= last.d / now.d;
      pan(now.x - last.x, now.y - last.y);
      last = now;
    }
    redraw();
  });
  function release(e) { pointers.delete(e.pointerId); last = pointers.size === 2 ? pinchState() : null; }
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    view.dist *= Math.exp(Math.max(-1, Math.min(1, e.deltaY * 0.0015)));
    redraw();
  }, { passive: false });
  window.addEventListener("keydown", function (e) {
    if (e.target && e.target.tagName === "INPUT" && e.target.type !== "checkbox") return;
    if (e.key === "r" || e.key === "R") S.resetView();
    else if (e.key === "+" || e.key === "=") { sizeInput.value = S.pointSize = Math.min(8, S.pointSize + 0.5); redraw(); }
    else if (e.key === "-") { sizeInput.value = S.pointSize = Math.max(1, S.pointSize - 0.5); redraw(); }
  });
  window.addEventListener("resize", redraw);
  if (pending === 0) finish();
})();
