"""Synthetic two-view scenes with known poses, shared by the solver tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twoview.geometry import Camera, Pose
from twoview.geometry.rotation import so3_exp


@dataclass
class Scene:
    cam0: Camera
    cam1: Camera
    cam1_from_cam0: Pose
    points0: np.ndarray  # (N, 3) in camera 0
    kpts0: np.ndarray
    kpts1: np.ndarray
    depth0: np.ndarray  # (H, W) dense: points lie on depth-map surfaces
    depth1: np.ndarray


def random_pose(rng, max_angle_deg=20.0, max_t=1.0) -> Pose:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(2.0, max_angle_deg))
    t = rng.normal(size=3)
    t *= rng.uniform(0.2, max_t) / np.linalg.norm(t)
    return Pose(so3_exp(axis * angle), t)


def make_scene(rng, pose: Pose | None = None, n=300, planar=False, scale=1.0, W=640, H=480) -> Scene:
    """A scene of fronto-parallel depth-map patches seen by both cameras.

    Depth maps are piecewise smooth: a slanted plane (planar=True) or a plane with a
    low-frequency bump, so the depth at any pixel is known exactly.
    """
    cam = Camera(500.0, 500.0, (W - 1) / 2, (H - 1) / 2, W, H)
    pose = pose or random_pose(rng)
    pose = pose.scaled(scale)

    def surface_depth(u, v):
        base = 4.0 + 0.002 * (u - W / 2) + 0.001 * (v - H / 2)
        if planar:
            return base * scale
        return (base + 0.5 * np.sin(u / 90.0) * np.cos(v / 70.0)) * scale

    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    depth0 = surface_depth(uu, vv)
    # Sample points in image 0 that are visible in image 1.
    pts, k0, k1 = [], [], []
    while len(pts) < n:
        u = rng.uniform(5, W - 6, size=4 * n)
        v = rng.uniform(5, H - 6, size=4 * n)
        u, v = np.round(u), np.round(v)  # exact depth at the sampled pixel
        z = surface_depth(u, v)
        X0 = cam.unproject(np.stack([u, v], 1), z)
        X1 = pose.apply(X0)
        ok = X1[:, 2] > 0.1
        uv1 = cam.project(X1[ok])
        inside = cam.in_image(uv1, margin=5)
        pts.append(X0[ok][inside])
        k0.append(np.stack([u, v], 1)[ok][inside])
        k1.append(uv1[inside])
        if sum(len(p) for p in pts) >= n:
            break
    X0 = np.concatenate(pts)[:n]
    kp0 = np.concatenate(k0)[:n]
    kp1 = np.concatenate(k1)[:n]
    # Depth map of view 1: each point's depth written on its 3x3 pixel patch; points whose
    # patches would collide are dropped, so the look-up at every keypoint is exact.
    depth1 = np.full((H, W), np.nan)
    z1 = pose.apply(X0)[:, 2]
    xi, yi = np.rint(kp1[:, 0]).astype(int), np.rint(kp1[:, 1]).astype(int)
    keep = np.zeros(len(X0), bool)
    taken = np.zeros((H, W), bool)
    for i in range(len(X0)):
        ys, xs = slice(yi[i] - 2, yi[i] + 3), slice(xi[i] - 2, xi[i] + 3)
        if taken[ys, xs].any():
            continue
        taken[ys, xs] = True
        depth1[yi[i] - 1 : yi[i] + 2, xi[i] - 1 : xi[i] + 2] = z1[i]
        keep[i] = True
    X0, kp0, kp1 = X0[keep], kp0[keep], kp1[keep]
    return Scene(cam, cam, pose, X0, kp0, kp1, depth0, depth1)
