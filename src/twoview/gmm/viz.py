"""Pictures of two mixtures overlaid before and after alignment.

PNG (matplotlib, Agg): top (x-z) and side (z-y) views of both mixtures' means in camera 1's
frame, view 0 in orange and view 1 in blue, for the initial and the refined pose. HTML: a
self-contained page (no external scripts) drawing both coloured point sets, rotatable
with the mouse.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from twoview.geometry.pose import Pose
from twoview.gmm.mixture import GaussianMixture
from twoview.io.atomic import atomic_write_bytes, atomic_write_text


def overlay_png(path: str | Path, mix0: GaussianMixture, mix1: GaussianMixture, poses: dict[str, Pose],
                max_points: int = 4000) -> Path:
    """Write a picture with one row per pose in ``poses`` (e.g. {"initial": T0, "refined": T1}),
    PNG or JPEG by the extension of ``path`` (:func:`twoview.viz.image_format`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from twoview.viz import image_format

    fmt = image_format(path)
    rng = np.random.default_rng(0)
    i0 = rng.permutation(len(mix0))[:max_points]
    i1 = rng.permutation(len(mix1))[:max_points]
    b = mix1.means[i1]
    fig, axes = plt.subplots(len(poses), 2, figsize=(10, 4.6 * len(poses)), squeeze=False)
    for row, (name, T) in enumerate(poses.items()):
        a = T.apply(mix0.means[i0])
        for col, (u, v, lu, lv) in enumerate(((0, 2, "x (m)", "z (m)"), (2, 1, "z (m)", "y (m)"))):
            ax = axes[row, col]
            ax.scatter(b[:, u], b[:, v], s=1.5, c="tab:blue", alpha=0.5, label="view 1", linewidths=0)
            ax.scatter(a[:, u], a[:, v], s=1.5, c="tab:orange", alpha=0.5, label="view 0 (moved)", linewidths=0)
            ax.set_xlabel(lu)
            ax.set_ylabel(lv)
            ax.set_aspect("equal", adjustable="datalim")
            if v == 1:
                ax.invert_yaxis()
            ax.set_title(f"{name}: {'top' if col == 0 else 'side'} view (camera 1 frame)")
            if row == 0 and col == 0:
                ax.legend(loc="upper right", markerscale=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>twoview gmm</title>
<style>body{margin:0;background:#111;color:#ddd;font:13px sans-serif}canvas{display:block}
#t{position:absolute;left:8px;top:6px}</style></head><body><div id="t">__TITLE__ - drag to rotate, wheel to zoom,
keys 0/1: toggle views</div><canvas id="c"></canvas><script>
const D=__DATA__;const c=document.getElementById('c'),g=c.getContext('2d');let W,H;
function rs(){W=c.width=innerWidth;H=c.height=innerHeight;draw()}
let ya=0.6,pa=0.3,zm=1,show=[1,1],dr=null;const ctr=D.center,sc=D.scale;
function draw(){g.fillStyle='#111';g.fillRect(0,0,W,H);const cy=Math.cos(ya),sy=Math.sin(ya),cp=Math.cos(pa),sp=Math.sin(pa);
const f=Math.min(W,H)*0.45*zm/sc;for(let k=0;k<2;k++){if(!show[k])continue;const P=D.sets[k];
for(let i=0;i<P.length;i+=6){const x=P[i]-ctr[0],y=P[i+1]-ctr[1],z=P[i+2]-ctr[2];
const X=cy*x+sy*z,Z=-sy*x+cy*z,Y=cp*y-sp*Z;g.fillStyle='rgb('+P[i+3]+','+P[i+4]+','+P[i+5]+')';
g.fillRect(W/2+f*X,H/2+f*Y,2,2)}}}
c.onmousedown=e=>dr=[e.clientX,e.clientY];onmouseup=()=>dr=null;
onmousemove=e=>{if(!dr)return;ya+=(e.clientX-dr[0])*0.01;pa+=(e.clientY-dr[1])*0.01;dr=[e.clientX,e.clientY];draw()};
c.onwheel=e=>{zm*=e.deltaY<0?1.1:0.9;draw()};onkeydown=e=>{if(e.key=='0')show[0]^=1;if(e.key=='1')show[1]^=1;draw()};
onresize=rs;rs();</script></body></html>"""


def overlay_html(path: str | Path, mix0: GaussianMixture, mix1: GaussianMixture, pose: Pose,
                 title: str = "refined", max_points: int = 20000) -> Path:
    """Write a self-contained HTML 3D view of both mixtures (view 0 moved by ``pose``),
    each Gaussian drawn as a point in its own colour."""
    rng = np.random.default_rng(0)
    sets = []
    for mix, T in ((mix0, pose), (mix1, Pose.identity())):
        idx = rng.permutation(len(mix))[:max_points]
        p = T.apply(mix.means[idx])
        rgb = np.clip(mix.colors[idx] * 255, 0, 255).round()
        sets.append(np.round(np.concatenate([p, rgb], 1), 4).reshape(-1).tolist())
    allp = np.concatenate([pose.apply(mix0.means), mix1.means]) if len(mix0) + len(mix1) else np.zeros((1, 3))
    center = np.median(allp, axis=0)
    scale = float(np.percentile(np.linalg.norm(allp - center, axis=1), 90)) or 1.0
    data = json.dumps({"sets": sets, "center": center.tolist(), "scale": scale})
    html = _HTML.replace("__DATA__", data).replace("__TITLE__", title)
    return atomic_write_text(path, html)
