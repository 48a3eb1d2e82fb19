"""The toy world, version 2: a numpy first-person raycaster at 256x144 (16:9).

A 24x24 grid of textured blocks (brick, stone, planks, metal; tinted per block), a tiled floor, a sky
with a skyline that depends on the absolute heading, three object kinds standing on the floor (trees,
lamps that light the floor and walls around them, crates), a sun that shades wall faces by their
orientation, and distance fog whose colour varies per world. One world per seed; rendering is
deterministic (no clocks, no global RNG).

Conventions (shared with the trained model and the metrics):
- controls per frame: keys W 87 forward, S 83 back, A 65 strafe left, D 68 strafe right;
  mouse dx > 0 turns right, dx < 0 turns left (YAW_PER_MOUSE radians per unit); dy is ignored.
- frame f is rendered *after* applying the controls of frame f. The world model sees one control set
  per latent (4 frames), held for those 4 frames.
- images: float32 [3, H, W] in [0, 1], H = 144, W = 256. Turning left moves the scene to the right.
"""
from __future__ import annotations

import numpy as np

from tools.toyworld.render import KEY_A, KEY_D, KEY_S, KEY_W, Player, cast_rays

YAW_PER_MOUSE = 0.12      # radians of yaw per unit of mouse dx (same as version 1)
MOVE_SPEED = 0.06         # grid cells per frame
PLAYER_RADIUS = 0.2
FOV_TAN = 0.8             # half-width of the camera plane: ~77 degree horizontal field of view
HEIGHT, WIDTH = 144, 256
MAP_SIZE, TEX = 24, 32    # grid cells per side; texels per texture side
FOG_DISTANCE = 12.0       # cells at which fog reaches ~63 %

__all__ = ["KEY_A", "KEY_D", "KEY_S", "KEY_W", "World", "HEIGHT", "WIDTH"]


def _textures() -> np.ndarray:
    """float32 [5, TEX, TEX] brightness patterns in [0.4, 1]: brick, stone, planks, metal, floor tile.

    Patterns are a few texels wide (mortar lines 2 texels) so a 16x-downsampling autoencoder can keep
    their layout; they come from a fixed RNG and are the same in every world."""
    rng = np.random.default_rng(12345)
    y, x = np.mgrid[0:TEX, 0:TEX]
    grain = rng.uniform(-0.06, 0.06, (TEX, TEX))
    brick_row = y // 8
    brick = np.where((y % 8 < 2) | (((x + 8 * (brick_row % 2)) % 16) < 2), 0.45, 0.95)
    stone = np.where((y % 16 < 2) | (x % 16 < 2), 0.5, 0.9 - 0.15 * ((x // 16 + y // 16) % 2))
    planks = 0.8 + 0.12 * np.sin(x * 0.6 + 2 * np.sin(y * 0.2)) - np.where(x % 11 < 2, 0.35, 0)
    metal = 0.7 + 0.25 * (((x + y) // 6) % 2) - np.where(np.abs(y - 16) < 2, 0.3, 0)
    tile = np.where((x % 16 < 1) | (y % 16 < 1), 0.55, 0.85 + 0.1 * ((x // 16 + y // 16) % 2))
    return np.clip(np.stack([brick, stone, planks, metal, tile]) + grain, 0.4, 1).astype(np.float32)


TEXTURES = _textures()
TINTS = np.array([[0.80, 0.35, 0.25], [0.62, 0.62, 0.66], [0.70, 0.50, 0.30], [0.40, 0.55, 0.75],
                  [0.85, 0.75, 0.35], [0.45, 0.70, 0.45], [0.75, 0.45, 0.70], [0.90, 0.90, 0.88]], np.float32)
SPRITE_KINDS = ("tree", "lamp", "crate")


def make_map(rng: np.random.Generator, size: int = MAP_SIZE, density: float = 0.12) -> np.ndarray:
    """int16 grid [size, size]: 0 empty, else 1 + texture * 8 + tint (texture 0..3, tint 0..7).

    Solid border; the centre 3x3 is free (the player starts there)."""
    cells = 1 + rng.integers(0, 4, (size, size)) * 8 + rng.integers(0, 8, (size, size))
    grid = np.where(rng.random((size, size)) < density, cells, 0)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        grid[edge] = cells[edge]
    mid = size // 2
    grid[mid - 1:mid + 2, mid - 1:mid + 2] = 0
    return grid.astype(np.int16)


def place_sprites(rng: np.random.Generator, grid: np.ndarray, count: int = 18) -> np.ndarray:
    """float64 [N, 3]: (x, y, kind) of objects standing in free cells away from the centre."""
    free = np.argwhere(grid == 0)
    mid = grid.shape[0] / 2
    free = free[np.hypot(free[:, 1] + 0.5 - mid, free[:, 0] + 0.5 - mid) > 1.6]
    pick = free[rng.choice(len(free), size=min(count, len(free)), replace=False)]
    kinds = rng.choice(len(SPRITE_KINDS), size=len(pick), p=[0.45, 0.25, 0.30])
    return np.column_stack([pick[:, 1] + 0.5, pick[:, 0] + 0.5, kinds]).astype(np.float64)


class World:
    """One episode: a map, its objects, a sun and fog, and a player. `step(buttons, dx)`, then `render()`."""

    def __init__(self, seed: int, height: int = HEIGHT, width: int = WIDTH):
        rng = np.random.default_rng(seed)
        self.grid = make_map(rng)
        self.sprites = place_sprites(rng, self.grid)
        mid = self.grid.shape[0] / 2
        self.player = Player(mid + rng.uniform(-0.5, 0.5), mid + rng.uniform(-0.5, 0.5), rng.uniform(0, 2 * np.pi))
        self.height, self.width = height, width
        self.sky_phase = rng.uniform(0, 2 * np.pi, 4)
        angle = rng.uniform(0, 2 * np.pi)
        self.sun = np.array([np.cos(angle), np.sin(angle)])
        self.fog = np.float32([0.62, 0.68, 0.78]) + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
        self.lamps = self.sprites[self.sprites[:, 2] == 1, :2]

    def blocked(self, x: float, y: float) -> bool:
        r, size = PLAYER_RADIUS, self.grid.shape[0]
        cells = {(int(x + dx), int(y + dy)) for dx in (-r, r) for dy in (-r, r)}
        return any(not (0 <= cx < size and 0 <= cy < size) or self.grid[cy, cx] > 0 for cx, cy in cells)

    def step(self, buttons, mouse_dx: float = 0.0):
        """Apply one frame of input: yaw first, then movement with per-axis collision."""
        p = self.player
        p.yaw = (p.yaw + YAW_PER_MOUSE * float(mouse_dx)) % (2 * np.pi)
        forward = p.direction
        right = np.array([-forward[1], forward[0]])
        buttons = set(buttons)
        move = forward * ((KEY_W in buttons) - (KEY_S in buttons)) + right * ((KEY_D in buttons) - (KEY_A in buttons))
        norm = np.linalg.norm(move)
        if norm > 0:
            move = move / norm * MOVE_SPEED
            if not self.blocked(p.x + move[0], p.y):
                p.x += move[0]
            if not self.blocked(p.x, p.y + move[1]):
                p.y += move[1]

    def lamp_light(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Warm light added by the lamps at map points (x, y) (same shape), ~1 next to a lamp."""
        light = np.zeros(np.shape(x), np.float32)
        for lx, ly in self.lamps:
            light += 1.0 / (1.0 + 1.5 * ((x - lx) ** 2 + (y - ly) ** 2))
        return np.minimum(light, 1.2)

    def render(self) -> np.ndarray:
        """float32 [3, H, W] in [0, 1]."""
        h, w = self.height, self.width
        image = np.empty((h, w, 3), np.float32)
        horizon = h // 2
        camera = (np.arange(w) + 0.5) / w * 2 - 1                          # -1 left .. +1 right
        forward = self.player.direction
        right = np.array([-forward[1], forward[0]])
        rays = forward[None] + camera[:, None] * FOV_TAN * right[None]     # [w, 2]
        self._sky(image, rays, horizon)
        self._floor(image, rays, horizon)
        depth = self._walls(image, rays, horizon)
        self._sprites(image, forward, right, horizon, depth)
        return np.ascontiguousarray(image.transpose(2, 0, 1)).clip(0, 1)

    def _fogged(self, color: np.ndarray, dist: np.ndarray) -> np.ndarray:
        fog = (1 - np.exp(-dist / FOG_DISTANCE)).astype(np.float32)[..., None]
        return color * (1 - fog) + self.fog * fog

    def _sky(self, image, rays, horizon):
        angle = np.arctan2(rays[:, 1], rays[:, 0])                          # absolute heading per column
        a, b, c, d = self.sky_phase
        ridge = 0.30 + 0.12 * np.sin(3 * angle + a) + 0.07 * np.sin(7 * angle + b) + 0.04 * np.sin(11 * angle + c)
        up = ((horizon - np.arange(horizon)) / horizon)[:, None]            # 1 at the top, 0 at the horizon
        cloud = 0.5 + 0.5 * np.sin(5 * angle[None] + d + 9 * up) * np.sin(2 * angle[None] - 13 * up)
        sky = np.stack([0.30 + 0.25 * up + 0.15 * cloud, 0.50 + 0.20 * up + 0.15 * cloud,
                        0.92 + 0.0 * up + 0.05 * cloud], -1)
        far = np.float32([0.42, 0.40, 0.55]) * (0.8 + 0.2 * np.sin(17 * angle + c))[:, None]
        sky = np.where((up < ridge[None])[..., None], far[None], sky)
        image[:horizon] = self._fogged(sky, np.full(sky.shape[:2], 6.0))

    def _floor(self, image, rays, horizon):
        h = image.shape[0]
        rows = np.arange(horizon, h) + 0.5
        dist = horizon / (rows - horizon)                                   # camera height 0.5, unit wall height
        px = self.player.x + dist[:, None] * rays[None, :, 0]
        py = self.player.y + dist[:, None] * rays[None, :, 1]
        tx = (np.floor(px * TEX) % TEX).astype(np.int64)
        ty = (np.floor(py * TEX) % TEX).astype(np.int64)
        shade = TEXTURES[4][ty, tx]
        base = np.float32([0.36, 0.50, 0.30]) * shade[..., None]
        base = base * 0.75 + self.lamp_light(px, py)[..., None] * np.float32([0.45, 0.35, 0.15])
        image[horizon:] = self._fogged(base, dist[:, None] * np.hypot(rays[None, :, 0], rays[None, :, 1]))

    def _walls(self, image, rays, horizon) -> np.ndarray:
        """Draw walls; returns the per-column wall distance (the depth buffer for sprites)."""
        h, w = image.shape[0], image.shape[1]
        dist, side, cell, u = cast_rays(self.grid, self.player.x, self.player.y, rays)
        code = np.maximum(cell, 1) - 1
        texture, tint = code // 8, code % 8
        normal = np.where(side[:, None] == 0, [[1.0, 0.0]], [[0.0, 1.0]]) * -np.sign(
            np.where(side == 0, rays[:, 0], rays[:, 1]))[:, None]
        sun = 0.65 + 0.35 * np.clip((normal * self.sun).sum(1), -1, 1)       # faces toward the sun are brighter
        hit_x = self.player.x + dist * rays[:, 0]
        hit_y = self.player.y + dist * rays[:, 1]
        light = (sun + 0.6 * self.lamp_light(hit_x, hit_y)).astype(np.float32)
        half = horizon / np.maximum(dist, 1e-3)                             # half wall height in rows
        rows = np.arange(h)[:, None] + 0.5
        v = (rows - (horizon - half)[None]) / (2 * half[None])              # 0 top .. 1 bottom of the wall
        visible = (v >= 0) & (v < 1) & (cell > 0)[None]
        tx = np.minimum((u * TEX).astype(np.int64), TEX - 1)
        ty = np.clip((v * TEX).astype(np.int64), 0, TEX - 1)
        shade = TEXTURES[texture[None].repeat(h, 0), ty, tx[None].repeat(h, 0)]
        color = TINTS[tint][None] * (shade * light[None])[..., None]
        color = self._fogged(color, np.broadcast_to(dist * np.hypot(rays[:, 0], rays[:, 1]), (h, w)))
        image[visible] = color[visible]
        return dist

    def _sprites(self, image, forward, right, horizon, depth):
        """Billboards, far to near, hidden behind nearer walls (per-column depth test)."""
        h, w = image.shape[0], image.shape[1]
        rel = self.sprites[:, :2] - [self.player.x, self.player.y]
        along = rel @ forward                                               # depth along the view direction
        across = rel @ right
        for i in np.argsort(-along):
            if along[i] < 0.2:
                continue
            centre = (across[i] / (along[i] * FOV_TAN) + 1) * w / 2
            size = h / along[i]                                             # one cell tall on screen
            kind = int(self.sprites[i, 2])
            half_w = size * (0.22 if kind == 1 else 0.35)
            cols = np.arange(max(0, int(centre - half_w)), min(w, int(centre + half_w) + 1))
            cols = cols[depth[cols] > along[i]]
            if len(cols) == 0:
                continue
            s = (cols + 0.5 - centre) / half_w                              # -1 .. 1 across the sprite
            rows = np.arange(max(0, int(horizon - size / 2)), min(h, int(horizon + size / 2) + 1))
            t = (rows + 0.5 - (horizon - size / 2)) / size                  # 0 top .. 1 bottom (floor)
            mask, color = _sprite_shape(kind, s[None], t[:, None])
            light = 0.8 + 0.6 * float(self.lamp_light(self.sprites[i, 0], self.sprites[i, 1]))
            color = self._fogged(color * (light if kind != 1 else 1.0), np.full(mask.shape, along[i]))
            block = image[rows[:, None], cols[None]]
            image[rows[:, None], cols[None]] = np.where(mask[..., None], color, block)


def _sprite_shape(kind: int, s: np.ndarray, t: np.ndarray):
    """(mask [R, C] bool, colour [R, C, 3]) of one object kind at sprite coords s (-1..1), t (0..1)."""
    shape = np.broadcast_shapes(s.shape, t.shape)
    color = np.zeros((*shape, 3), np.float32)
    if kind == 0:        # tree: a dark cone of leaves over a trunk
        leaves = (t > 0.1) & (t < 0.75) & (np.abs(s) < (t - 0.1) / 0.65)
        trunk = (t >= 0.75) & (np.abs(s) < 0.18)
        color[:] = np.float32([0.45, 0.30, 0.15])
        color[np.broadcast_to(leaves, shape)] = np.float32([0.15, 0.45, 0.18])
        stripes = np.broadcast_to(leaves & (((t * 12).astype(int) % 3) == 0), shape)
        color[stripes] = np.float32([0.10, 0.35, 0.12])
        return np.broadcast_to(leaves | trunk, shape), color
    if kind == 1:        # lamp: a thin post with a glowing orb
        orb = (s ** 2 + ((t - 0.42) / 0.22) ** 2) < 0.8
        post = (t > 0.5) & (np.abs(s) < 0.2)
        color[:] = np.float32([0.25, 0.25, 0.28])
        color[np.broadcast_to(orb, shape)] = np.float32([1.0, 0.92, 0.6])
        return np.broadcast_to(orb | post, shape), color
    crate = (t > 0.55) & (np.abs(s) < 0.9)                                   # crate: a low box with a cross
    cross = (np.abs(np.abs(s) - np.abs((t - 0.775) / 0.225 * 0.9)) < 0.15) | (np.abs(s) > 0.75)
    color[:] = np.float32([0.70, 0.50, 0.25])
    color[np.broadcast_to(cross, shape)] = np.float32([0.45, 0.30, 0.12])
    return np.broadcast_to(crate, shape), color


def save_seed_image(path, seed: int = 900_007) -> None:
    """A 256x144 PNG of a held-out world after one step forward: the seed image for toy rollouts."""
    from PIL import Image

    world = World(seed)
    world.step([KEY_W], 0.0)
    Image.fromarray((world.render().transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(path)
