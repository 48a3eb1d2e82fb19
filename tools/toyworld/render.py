"""The toy world: a numpy first-person raycaster (grid of coloured blocks, checkered floor, sky with a
mountain skyline), driven by Owl-Control inputs.

Conventions (shared with the trained model and the metrics):
- controls per frame: keys W 87 forward, S 83 back, A 65 strafe left, D 68 strafe right;
  mouse dx > 0 turns right, dx < 0 turns left (YAW_PER_MOUSE radians per unit); dy is ignored.
- frame f is rendered *after* applying the controls of frame f (the engine's `step(controls)`).
- images: float32 [3, H, W] in [0, 1], H = 64, W = 128 by default (sky on top, floor below).
Turning left moves the scene to the right on screen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEY_W, KEY_A, KEY_S, KEY_D = 87, 65, 83, 68
YAW_PER_MOUSE = 0.12      # radians of yaw per unit of mouse dx
MOVE_SPEED = 0.06         # grid cells per frame
PLAYER_RADIUS = 0.2
FOV_TAN = 0.8             # half-width of the camera plane: ~77 degree horizontal field of view
HEIGHT, WIDTH = 64, 128
SUPERSAMPLE = 2           # render at 2x and average down: fewer jaggies, smoother latents

PALETTE = np.array([[0.85, 0.20, 0.18], [0.95, 0.75, 0.15], [0.20, 0.45, 0.90], [0.85, 0.40, 0.80],
                    [0.95, 0.55, 0.20], [0.30, 0.80, 0.80], [0.95, 0.95, 0.95], [0.55, 0.35, 0.20]],
                   dtype=np.float32)


def make_map(rng: np.random.Generator, size: int = 20, density: float = 0.14) -> np.ndarray:
    """int8 grid [size, size]: 0 empty, k>0 a block of PALETTE[k-1]; solid border; centre 3x3 free."""
    grid = np.where(rng.random((size, size)) < density, rng.integers(1, len(PALETTE) + 1, (size, size)), 0)
    grid[0, :], grid[-1, :] = rng.integers(1, len(PALETTE) + 1, size), rng.integers(1, len(PALETTE) + 1, size)
    grid[:, 0], grid[:, -1] = rng.integers(1, len(PALETTE) + 1, size), rng.integers(1, len(PALETTE) + 1, size)
    mid = size // 2
    grid[mid - 1:mid + 2, mid - 1:mid + 2] = 0
    return grid.astype(np.int8)


@dataclass
class Player:
    x: float
    y: float
    yaw: float   # radians; view direction (cos, sin) in map coordinates

    @property
    def direction(self) -> np.ndarray:
        return np.array([np.cos(self.yaw), np.sin(self.yaw)])


class World:
    """One episode: a map and a player. `step(buttons, mouse_dx)` then `render()`."""

    def __init__(self, seed: int, height: int = HEIGHT, width: int = WIDTH):
        rng = np.random.default_rng(seed)
        self.grid = make_map(rng)
        mid = self.grid.shape[0] / 2
        self.player = Player(mid + rng.uniform(-0.5, 0.5), mid + rng.uniform(-0.5, 0.5), rng.uniform(0, 2 * np.pi))
        self.height, self.width = height, width
        self.sky_phase = rng.uniform(0, 2 * np.pi, 3)

    def blocked(self, x: float, y: float) -> bool:
        r = PLAYER_RADIUS
        cells = {(int(x + dx), int(y + dy)) for dx in (-r, r) for dy in (-r, r)}
        size = self.grid.shape[0]
        return any(not (0 <= cx < size and 0 <= cy < size) or self.grid[cy, cx] > 0 for cx, cy in cells)

    def step(self, buttons, mouse_dx: float = 0.0):
        """Apply one frame of input: yaw first, then movement with per-axis collision."""
        p = self.player
        p.yaw = (p.yaw + YAW_PER_MOUSE * float(mouse_dx)) % (2 * np.pi)
        forward = p.direction
        right = np.array([-forward[1], forward[0]])   # screen-right in map coords (see render)
        move = np.zeros(2)
        buttons = set(buttons)
        move += forward * ((KEY_W in buttons) - (KEY_S in buttons))
        move += right * ((KEY_D in buttons) - (KEY_A in buttons))
        norm = np.linalg.norm(move)
        if norm > 0:
            move = move / norm * MOVE_SPEED
            if not self.blocked(p.x + move[0], p.y):
                p.x += move[0]
            if not self.blocked(p.x, p.y + move[1]):
                p.y += move[1]

    def render(self) -> np.ndarray:
        """float32 [3, H, W] in [0, 1]."""
        h, w = self.height * SUPERSAMPLE, self.width * SUPERSAMPLE
        image = np.empty((h, w, 3), np.float32)
        horizon = h // 2
        camera = (np.arange(w) + 0.5) / w * 2 - 1                          # -1 left .. +1 right
        forward = self.player.direction
        right = np.array([-forward[1], forward[0]])
        rays = forward[None] + camera[:, None] * FOV_TAN * right[None]     # [w, 2]
        self._sky(image, rays, horizon)
        self._floor(image, rays, horizon)
        self._walls(image, rays, horizon)
        image = image.reshape(self.height, SUPERSAMPLE, self.width, SUPERSAMPLE, 3).mean((1, 3))
        return np.ascontiguousarray(image.transpose(2, 0, 1)).clip(0, 1)

    def _sky(self, image, rays, horizon):
        h = image.shape[0]
        angle = np.arctan2(rays[:, 1], rays[:, 0])                          # absolute heading per column
        a, b, c = self.sky_phase
        ridge = 0.35 + 0.12 * np.sin(3 * angle + a) + 0.08 * np.sin(7 * angle + b) + 0.05 * np.sin(13 * angle + c)
        rows = np.arange(horizon)[:, None]
        height_above = (horizon - rows) / horizon                           # 1 at top, 0 at horizon
        sky = np.stack([0.35 + 0.3 * height_above, 0.55 + 0.25 * height_above, 0.95 + 0 * height_above], -1)
        image[:horizon] = np.broadcast_to(sky, (horizon, image.shape[1], 3))
        mountain = height_above < ridge[None, :]
        image[:horizon][mountain] = (0.45, 0.42, 0.55)
        del h

    def _floor(self, image, rays, horizon):
        h = image.shape[0]
        rows = np.arange(horizon, h) + 0.5
        dist = horizon / (rows - horizon)                                   # camera height 0.5, unit wall height
        px = self.player.x + dist[:, None] * rays[None, :, 0]
        py = self.player.y + dist[:, None] * rays[None, :, 1]
        checker = (np.floor(px).astype(np.int64) + np.floor(py).astype(np.int64)) & 1
        base = np.where(checker[..., None] == 1, np.float32([0.25, 0.55, 0.20]), np.float32([0.35, 0.65, 0.25]))
        fog = np.clip(dist / 14.0, 0, 1)[:, None, None]
        image[horizon:] = base * (1 - fog) + np.float32([0.6, 0.7, 0.8]) * fog

    def _walls(self, image, rays, horizon):
        h, w = image.shape[0], image.shape[1]
        dist, side, cell, u = cast_rays(self.grid, self.player.x, self.player.y, rays)
        color = PALETTE[np.maximum(cell, 1) - 1] * np.where(side == 1, 0.75, 1.0)[:, None]
        stripe = (np.abs(u - 0.5) > 0.44) | (np.abs(u - 0.5) < 0.03)         # dark edges and a middle seam
        color = color * np.where(stripe, 0.55, 1.0)[:, None]
        fog = np.clip(dist / 14.0, 0, 1)[:, None]
        color = color * (1 - fog) + np.float32([0.6, 0.7, 0.8]) * fog
        half = (horizon / np.maximum(dist, 1e-3))                           # half wall height in rows
        rows = np.arange(h)[:, None] + 0.5
        visible = (np.abs(rows - horizon) < half[None, :]) & (cell > 0)[None, :]
        image[visible] = np.broadcast_to(color[None], (h, w, 3))[visible]


def cast_rays(grid: np.ndarray, x: float, y: float, rays: np.ndarray, max_steps: int = 64):
    """Vectorised DDA over columns. Returns (perpendicular distance, side 0/1, cell id, wall coord u in [0,1))."""
    n = rays.shape[0]
    with np.errstate(divide="ignore"):
        delta = np.abs(1.0 / rays)
    map_x = np.full(n, int(x)); map_y = np.full(n, int(y))
    step_x = np.where(rays[:, 0] < 0, -1, 1); step_y = np.where(rays[:, 1] < 0, -1, 1)
    side_x = np.where(rays[:, 0] < 0, (x - map_x) * delta[:, 0], (map_x + 1 - x) * delta[:, 0])
    side_y = np.where(rays[:, 1] < 0, (y - map_y) * delta[:, 1], (map_y + 1 - y) * delta[:, 1])
    hit = np.zeros(n, bool); side = np.zeros(n, np.int64); cell = np.zeros(n, np.int64)
    size = grid.shape[0]
    for _ in range(max_steps):
        active = ~hit
        if not active.any():
            break
        go_x = active & (side_x < side_y)
        go_y = active & ~go_x
        map_x[go_x] += step_x[go_x]; side_x[go_x] += delta[go_x, 0]; side[go_x] = 0
        map_y[go_y] += step_y[go_y]; side_y[go_y] += delta[go_y, 1]; side[go_y] = 1
        inside = (map_x >= 0) & (map_x < size) & (map_y >= 0) & (map_y < size)
        values = np.where(inside, grid[np.clip(map_y, 0, size - 1), np.clip(map_x, 0, size - 1)], 1)
        newly = active & (values > 0)
        cell[newly] = values[newly]
        hit |= newly
    dist = np.where(side == 0, side_x - delta[:, 0], side_y - delta[:, 1])
    wall_pos = np.where(side == 0, y + dist * rays[:, 1], x + dist * rays[:, 0])
    return np.maximum(dist, 1e-3), side, cell, wall_pos - np.floor(wall_pos)


def save_seed_image(path, seed: int = 900_007) -> None:
    """A 64x128 PNG of a world after one step forward: the seed image for rollouts of the toy model."""
    from PIL import Image

    world = World(seed)
    world.step([KEY_W], 0.0)
    Image.fromarray((world.render().transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(path)
