"""Chessboard corner detection for frames and event accumulation images.

`cv2.findChessboardCornersSB` runs first; the classic `findChessboardCorners` is the fallback
(each finds boards the other misses: SB copes with noise and blur, the classic detector with
strong perspective and uneven event images). Either way the corners are refined by
`cornerSubPix` (see `_refine` for why SB's own sub-pixel fit is not kept). Corners come back as
(N, 2) float32 in one normalised order (OpenCV 5 returns (N, 2) where 4.x returned (N, 1, 2),
so shapes are made explicit here), and poor views are rejected with a reason.

Grid check (`fit_grid`, `check_view`): real lenses bend rows and columns smoothly (a fisheye by
a quarter of a square), a wrong grid (mis-ordered corners, a corner on the wrong feature,
another pattern size) puts corners where no smooth lens can. The corners are fitted by a
homography of the board plane followed by the one-parameter FOV model of radial distortion,
x = c + s * u * atan(a |u|) / (a |u|), about a free centre c (11 parameters, Levenberg-Marquardt);
each corner's deleted residual (against the fit to the others) must stay within 0.2 of its
local square. Measured: true grids <= 0.10 of a square (fisheye), a corner moved by half a
square >= 0.42; docs/calibration.md, "Real lenses".
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import Board


@dataclass
class Detection:
    """Corners of one view, or why there are none."""

    corners: np.ndarray | None  # (N, 2) float32, normalised order
    method: str = ""  # "sb" | "classic" | ""
    reason: str = ""  # why the view was rejected ("" when accepted)

    @property
    def ok(self) -> bool:
        return self.corners is not None


def _grid(corners: np.ndarray, board: Board) -> np.ndarray:
    return corners.reshape(board.rows, board.cols, 2)


def _patch_mean(gray: np.ndarray, xy: np.ndarray, radius: int) -> float:
    h, w = gray.shape
    x, y = int(round(xy[0])), int(round(xy[1]))
    x0, x1 = max(0, x - radius), min(w, x + radius + 1)
    y0, y1 = max(0, y - radius), min(h, y + radius + 1)
    if x0 >= x1 or y0 >= y1:
        return float("nan")
    return float(gray[y0:y1, x0:x1].mean())


def normalise_order(corners: np.ndarray, board: Board,
                    gray: np.ndarray | None = None) -> np.ndarray:
    """Put corners in one order whatever the detector: the first corner is the one next to the
    board's dark corner square when the board is colour-asymmetric and contrast says so, else
    the one nearer the image's top-left. Rows stay rows (the detectors keep `cols` per row)."""
    c = np.asarray(corners, np.float32).reshape(-1, 2)
    g = _grid(c, board)
    if board.colour_asymmetric and gray is not None:
        # centre of the outer square diagonal to each end corner (half a square outwards)
        a = g[0, 0] - 0.5 * (g[0, 1] - g[0, 0]) - 0.5 * (g[1, 0] - g[0, 0])
        b = g[-1, -1] - 0.5 * (g[-1, -2] - g[-1, -1]) - 0.5 * (g[-2, -1] - g[-1, -1])
        step = float(np.linalg.norm(g[0, 1] - g[0, 0]))
        r = max(1, int(0.15 * step))
        va, vb = _patch_mean(gray, a, r), _patch_mean(gray, b, r)
        if np.isfinite(va) and np.isfinite(vb) and abs(va - vb) > 10.0:
            return c if va < vb else c[::-1].copy()
    first, last = c[0], c[-1]
    return c if first.sum() <= last.sum() else c[::-1].copy()


def handedness(corners: np.ndarray, board: Board) -> float:
    """Sign of row direction x column direction: flips when an image is mirrored."""
    g = _grid(np.asarray(corners).reshape(-1, 2), board)
    row = g[0, -1] - g[0, 0]
    col = g[-1, 0] - g[0, 0]
    return float(np.sign(row[0] * col[1] - row[1] * col[0]))


@dataclass
class GridFit:
    """A board grid fitted by a homography + FOV-model radial distortion (`fit_grid`)."""

    residual_px: np.ndarray  # (N,) each corner's distance from the model fitted to the others
    local_step_px: np.ndarray  # (N,) square size of the fitted grid at each corner
    fit_residual_px: np.ndarray  # (N,) plain residuals of the fit to all corners
    fov_a2: float  # FOV-model a^2 (|u| in half image diagonals): > 0 barrel, < 0 pincushion
    centre_px: tuple[float, float]  # distortion centre
    iterations: int

    @property
    def worst(self) -> tuple[int, float]:
        """(corner index, residual in local squares) of the worst corner."""
        ratio = self.residual_px / self.local_step_px
        k = int(np.argmax(ratio))
        return k, float(ratio[k])


def _grid_model(p: np.ndarray, X: np.ndarray, c0: np.ndarray, s: float) -> np.ndarray:
    """Pixels of the board points X (N, 3) under p = (H[:8], a2, centre offset): the FOV model
    r_d = atan(a r_u) / a for a2 = a^2 > 0 (barrel), atanh for a2 < 0 (pincushion)."""
    H = np.append(p[:8], 1.0).reshape(3, 3)
    q = X @ H.T
    u = q[:, :2] / q[:, 2:3]
    ar = np.sqrt(abs(p[8]) * np.sum(u * u, axis=1, keepdims=True))
    safe = np.maximum(ar, 1e-12)
    if p[8] >= 0:
        f = np.where(ar > 1e-6, np.arctan(safe) / safe, 1.0)
    else:
        f = np.where(ar > 1e-6, np.arctanh(np.minimum(safe, 0.999)) / safe, 1.0)
    return (u * f + p[9:11]) * s + c0


def fit_grid(corners: np.ndarray, board: Board, image_size: tuple[int, int],
             max_iter: int = 60) -> GridFit | None:
    """Least-squares fit of the corners by a homography of the board plane followed by the
    one-parameter FOV model of radial distortion about a free centre (11 parameters, see
    the module notes); None when the grid is degenerate (no homography)."""
    w, h = image_size
    c0 = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    s = 0.5 * float(np.hypot(w, h))
    y = np.asarray(corners, np.float64).reshape(-1, 2)
    jj, ii = np.mgrid[0:board.rows, 0:board.cols]
    X = np.stack([ii.ravel(), jj.ravel(), np.ones(ii.size)], axis=1).astype(np.float64)
    H0, _ = cv2.findHomography(X[:, :2], (y - c0) / s, 0)
    if H0 is None or not np.all(np.isfinite(H0)) or abs(H0[2, 2]) < 1e-12:
        return None
    p = np.concatenate([(H0 / H0[2, 2]).ravel()[:8], np.zeros(3)])

    def jacobian(p: np.ndarray, r: np.ndarray) -> np.ndarray:
        J = np.empty((r.size, p.size))
        for k in range(p.size):  # forward differences: 11 cheap evaluations
            q = p.copy()
            q[k] += 1e-7 * max(1.0, abs(p[k]))
            J[:, k] = ((_grid_model(q, X, c0, s) - y).ravel() - r) / (q[k] - p[k])
        return J

    r = (_grid_model(p, X, c0, s) - y).ravel()
    cost, damping, it = float(r @ r), 1e-3, 0
    while it < max_iter:
        it += 1
        J = jacobian(p, r)
        A, g = J.T @ J, J.T @ r
        improved = False
        while damping < 1e10:
            step = np.linalg.solve(A + damping * np.diag(np.diag(A) + 1e-12), -g)
            r_new = (_grid_model(p + step, X, c0, s) - y).ravel()
            c_new = float(r_new @ r_new)
            if np.isfinite(c_new) and c_new < cost:
                improved = cost - c_new > 1e-9 * cost
                p, r, cost, damping = p + step, r_new, c_new, damping * 0.3
                break
            damping *= 10.0
        if not improved:
            break
    # deleted residuals: each corner against the model fitted to the others, to first order
    # (I - B_i)^-1 e_i with B_i the corner's 2x2 block of the hat matrix J (J'J)^-1 J' (its
    # leverage, capped at 0.9); a corner on the wrong feature pulls the fit towards itself
    # (most at the board's corners), which this undoes
    J = jacobian(p, r)
    Jc = J.reshape(-1, 2, p.size)
    B = np.einsum("nip,pq,njq->nij", Jc, np.linalg.pinv(J.T @ J), Jc)
    lev, vec = np.linalg.eigh(B)
    e = r.reshape(-1, 2)
    coef = np.einsum("nji,nj->ni", vec, e) / (1.0 - np.minimum(lev, 0.9))
    deleted = np.einsum("nij,nj->ni", vec, coef)
    # local square size of the fitted grid: sqrt of the area of the unit cell at each corner
    half = np.array([[0.5, 0, 0], [0, 0.5, 0]])
    dc = _grid_model(p, X + half[0], c0, s) - _grid_model(p, X - half[0], c0, s)
    dr = _grid_model(p, X + half[1], c0, s) - _grid_model(p, X - half[1], c0, s)
    area = np.abs(dc[:, 0] * dr[:, 1] - dc[:, 1] * dr[:, 0])
    return GridFit(np.linalg.norm(deleted, axis=1), np.sqrt(area), np.linalg.norm(e, axis=1),
                   float(p[8]), (float(c0[0] + s * p[9]), float(c0[1] + s * p[10])), it)


def check_view(corners: np.ndarray, board: Board, image_size: tuple[int, int],
               edge_px: float = 2.0, min_area_frac: float = 0.004,
               max_grid_err_frac: float = 0.2, min_grid_err_px: float = 1.0) -> str:
    """'' if the corners make a usable view, else why not: corners too near the image edge,
    board too small, or a grid no lens explains (`fit_grid`: a corner is off the fitted
    homography + radial distortion by more than `max_grid_err_frac` of its local square, and
    more than `min_grid_err_px`)."""
    w, h = image_size
    c = np.asarray(corners, np.float64).reshape(-1, 2)
    if c.shape[0] != board.n_corners:
        return f"{c.shape[0]} corners for a {board.cols}x{board.rows} pattern"
    if not np.all(np.isfinite(c)):
        return "non-finite corners"
    if (c[:, 0].min() < edge_px or c[:, 1].min() < edge_px or c[:, 0].max() > w - 1 - edge_px
            or c[:, 1].max() > h - 1 - edge_px):
        return "corners touch the image edge"
    hull = cv2.convexHull(c.astype(np.float32))
    if cv2.contourArea(hull) < min_area_frac * w * h:
        return "board too small in the image"
    g = c.reshape(board.rows, board.cols, 2)
    step = np.median(np.concatenate([np.linalg.norm(np.diff(g, axis=1), axis=2).ravel(),
                                     np.linalg.norm(np.diff(g, axis=0), axis=2).ravel()]))
    if step < 4.0:
        return "squares smaller than 4 px"
    fit = fit_grid(c, board, image_size)
    if fit is None:
        return "degenerate corner grid"
    k, frac = fit.worst
    if frac > max_grid_err_frac and fit.residual_px[k] > min_grid_err_px:
        row, col = divmod(k, board.cols)
        return (f"corner (row {row}, col {col}) is off the grid by {fit.residual_px[k]:.1f} px "
                f"= {frac:.2f} of its square ({fit.local_step_px[k]:.0f} px) under a homography "
                f"+ radial distortion (a2 {fit.fov_a2:.2f})")
    return ""


def _subpix_windows(corners: np.ndarray, board: Board, spread: float = 1.6) -> np.ndarray:
    """Half-size of the cornerSubPix window per corner: 0.4 of the shortest square side of the
    board (the window, 2 * half + 1 wide, stays inside the four squares around a corner), 2..15
    px; a wide window averages the per-pixel noise of event images (measured: 8 % lower error
    than 0.3). Under strong distortion squares shrink towards the image border (a fisheye's
    are a quarter of the size there) and such a window reaches past the board's outer squares
    (measured on the fisheye data: an outer corner dragged 10 px off). So on a board whose
    corner spacing varies by more than `spread` (95th / 5th percentile), each corner gets
    0.4 of its own nearest-neighbour distance instead (never more than the board-wide
    window); boards of near-equal squares (all the simulated ones) keep one window."""
    g = _grid(corners, board).astype(np.float64)
    dx = np.linalg.norm(np.diff(g, axis=1), axis=2)
    dy = np.linalg.norm(np.diff(g, axis=0), axis=2)
    step = float(min(np.median(dx), np.median(dy)))
    board_wide = int(np.clip(0.4 * step, 2, 15))
    all_d = np.concatenate([dx.ravel(), dy.ravel()])
    lo, hi = np.percentile(all_d, (5, 95))
    if hi <= spread * lo:
        return np.full(board.n_corners, board_wide)
    near = np.full((board.rows, board.cols), np.inf)
    near[:, 1:] = np.minimum(near[:, 1:], dx)
    near[:, :-1] = np.minimum(near[:, :-1], dx)
    near[1:] = np.minimum(near[1:], dy)
    near[:-1] = np.minimum(near[:-1], dy)
    half = np.minimum(board_wide, np.floor(0.4 * near.ravel()))
    return np.maximum(half, 2).astype(int)


def _refine(gray: np.ndarray, corners: np.ndarray, board: Board) -> np.ndarray:
    """`cornerSubPix` over a window of ~0.4 squares (per corner, `_subpix_windows`). Also run
    after SB: SB fits a model of equal squares, which the log response of an event camera
    breaks (lit squares look dilated), and measured on simulated event views SB alone is off by
    ~0.6 px RMS where the symmetric gradient refinement gets ~0.15 px."""
    c = np.asarray(corners, np.float32).reshape(-1, 2).copy()
    wins = _subpix_windows(c, board)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    for win in np.unique(wins):
        sel = wins == win
        c[sel] = np.asarray(cv2.cornerSubPix(gray, c[sel].reshape(-1, 1, 2).copy(),
                                             (int(win), int(win)), (-1, -1), crit)).reshape(-1, 2)
    return c


def contrast(gray: np.ndarray) -> float:
    """Spread of grey levels (99th - 1st percentile) on a subsample: a cheap "anything there?"."""
    sub = gray[::4, ::4]
    lo, hi = np.percentile(sub, (1, 99))
    return float(hi - lo)


def _attempt_sb(img: np.ndarray, board: Board, scale: float) -> np.ndarray | None:
    small = img if scale >= 1.0 else cv2.resize(img, None, fx=scale, fy=scale,
                                                interpolation=cv2.INTER_AREA)
    flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE
    found, c = cv2.findChessboardCornersSB(small, board.pattern_size, flags=flags)
    if not found or c is None or c.size != 2 * board.n_corners:
        return None
    c = np.asarray(c, np.float32).reshape(-1, 2)
    return c if scale >= 1.0 else (c + 0.5) / scale - 0.5  # pixel centres at integers


def _attempt_classic(img: np.ndarray, board: Board) -> np.ndarray | None:
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, c = cv2.findChessboardCorners(img, board.pattern_size, flags=flags)
    if not found or c is None or c.size != 2 * board.n_corners:
        return None
    return np.asarray(c, np.float32).reshape(-1, 2)


def detect_corners(gray: np.ndarray, board: Board, *, try_sb: bool = True,
                   try_classic: bool = True, sb_max_side_px: int = 480,
                   min_contrast: float = 12.0) -> Detection:
    """Find the board in a uint8 grey image, refined by `cornerSubPix` on the image itself.

    Attempts, cheapest first, until one gives a grid that passes `check_view`:
    1. SB on a copy shrunk to `sb_max_side_px` (~10x faster than full size; it only has to
       find the board, `cornerSubPix` sets the accuracy, so CALIB_CB_ACCURACY is not asked);
    2. the classic detector at full size; 3. the classic detector on a median-filtered copy
       (event images: per-pixel count noise breaks its quads); 4. SB at full size.
    Images without contrast (an unlit board) are rejected at once.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"detect_corners wants a uint8 (H, W) image, got {gray.dtype} "
                         f"{gray.shape}")
    size = (gray.shape[1], gray.shape[0])
    c_level = contrast(gray)
    if c_level < min_contrast:
        return Detection(None, "", f"no contrast ({c_level:.0f} grey levels): board unlit or "
                                   "absent")
    scale = min(1.0, sb_max_side_px / max(size))
    attempts = []
    if try_sb:
        attempts.append(("sb", lambda: _attempt_sb(gray, board, scale)))
    if try_classic:
        attempts.append(("classic", lambda: _attempt_classic(gray, board)))
        attempts.append(("classic", lambda: _attempt_classic(cv2.medianBlur(gray, 5), board)))
    if try_sb and scale < 1.0:
        attempts.append(("sb", lambda: _attempt_sb(gray, board, 1.0)))
    reasons = []
    for method, attempt in attempts:
        c = attempt()
        if c is None:
            reasons.append(f"{method}: not found")
            continue
        c = normalise_order(_refine(gray, c, board), board, gray)
        why = check_view(c, board, size)
        if not why:
            return Detection(c, method)
        reasons.append(f"{method}: {why}")
    return Detection(None, "", "; ".join(dict.fromkeys(reasons)))
