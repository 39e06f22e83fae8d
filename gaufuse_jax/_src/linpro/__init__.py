"""LinPro: snippet pseudo labels from fused instances by a linear program (paper §3.2, eq. 5-6).

For one video and one class, the K fused instances ``[s_k, e_k)`` (snippets) with scores
``b_k`` give the constraints (paper eq. 5; the authors' ``utils/utils.py:compute_score_matrix``)

  ``sum_{t in inner_k} a_k(t) x_t - sum_{t in outer_k} a_k(t) x_t = b_k``,

with the inner and outer areas of ``instance_areas`` (by default exactly the authors' rows:
inner ``[int(s_k), int(e_k))``, outer ``[int(s_k) - ceil(w), int(s_k))`` and
``[int(e_k), min(int(e_k) + floor(w) + 1, L - 1))``, ``w = 0.0785 len^0.9``), and ``a_k = 1``
(``normalize="sum"``, the authors' code: a constraint on sums) or ``a_k = 1 / |area|``
(``normalize="mean"``, the paper's text: "the average score of snippets within an action
boundary equals its confidence"). The label is the solution of
(paper eq. 6)

  ``minimize sum_t x_t  subject to  A x = b,  0 <= x <= 1``,

after which snippets with identical columns of ``A`` ("equivalent snippets") get the average of
their values. We do that exactly and cheaply:

* **Reduction.** Columns of ``A`` are piecewise constant between the breakpoints (area bounds), so
  snippets are grouped into regions between sorted breakpoints and regions with identical columns
  (e.g. the left and right outer areas of an instance) into *classes*. The reduced LP has one
  variable per class, the class mass ``m_c = sum_{t in c} x_t`` in ``[0, |c|]``, with cost 1 and
  constraint coefficient ``a_k(c)``. Any solution of the full LP averaged over classes is feasible
  and optimal for the reduced LP and vice versa, so the optima agree (tested against HiGHS on the
  full LP) and the broadcast labels ``x_t = m_c / |c|`` are equal on equivalent snippets by
  construction.
* **Decomposition.** Instances whose supports (inner plus outer areas) do not overlap, directly or
  through others, give independent LPs. Rows are sorted by support start and split into connected
  components; components of up to ``block_rows`` rows (2x, 4x ``block_rows``, ``K`` rows: the
  larger tiers) are packed by next fit into blocks of that many rows, each block solved as its own
  small LP (exact; a Newton step then costs ``O(block_rows^2)`` per row instead of a dense
  ``O(K^3)``). Only non-empty blocks are solved: the blocks of all problems of a batch are pooled
  per tier and solved on a fixed number of lanes, one batched Newton step at a time, a lane taking
  the next block as soon as its block is certified (a loop of data-dependent length: a batch
  costs the sum of its blocks' steps), so unused tiers cost nothing. The problems with rows are
  taken ``problem_chunk`` at a time until none is left (``active_map.map_active``), so problems
  without rows (classes gated off) cost nothing either, whatever the instance cap ``K``.
* **Pieces.** The labels of a problem are constant on the regions of its blocks and 0 between
  blocks: ``linpro_solve`` returns them as pieces (``LinproSolution``, a slot per region), whose
  shapes do not depend on the padded length ``T``, so one compiled LP serves videos of every
  length; ``linpro_assemble`` lays them out on ``T`` snippets. ``linpro_labels`` is the two.
* **Infeasible LPs** (e.g. a negative score on an instance without outer area, nested instances
  without outer area whose scores decrease inwards, identical rows with different scores; the
  authors' ``utils/utils.py:convert_segment_to_tensor`` writes NaN into the labels then) are
  handled by solving the
  *elastic* LP: every row gets slacks ``p_k, n_k >= 0`` with ``E m + p - n = b`` and the objective
  ``sum m + penalty * sum (p + n)``. For a feasible LP with ``penalty`` above the largest optimal
  dual (exact penalty) its solution is the LP solution; otherwise it is the label that violates
  the instance constraints least (in total, mass units), then has the least mass. Such problems
  are reported with ``info["status"] == STATUS_RELAXED`` and their violated rows counted. A solve
  that does not pass our own optimality certificate (primal residual, bounds, duality gap, all
  finite) gives zero labels for the class and ``STATUS_FAILED``. Labels are never NaN or inf.

Solvers (``solver=``), all jitted and batched with ``vmap`` over blocks and problems; all solve
the same elastic reduced LP (standard form ``min c.x, A x = b, 0 <= x <= u``) and are accepted
only by our certificate (``elastic_lp.certificate``: relative primal residual, bounds and
weak-duality gap from the returned duals), never by their own flags:

* ``"ipm"`` (default): a Mehrotra predictor-corrector interior point written here; a Newton step
  factorises the ``block_rows x block_rows`` normal equations (Cholesky, unrolled for small
  blocks). ~15-30 steps to the default tolerance (1e-9 in float64, 1e-5 in float32).
* ``"qpax"``: qpax's primal-dual interior point with ``Q = 0``; it factorises the dense ``n x n``
  Hessian (``n`` = classes + 2 slacks per row, about ``6 * block_rows``), so a step costs
  ``O(n^3)``; as accurate as ``"ipm"``, much slower. (With jax 0.10.2 on CPU, qpax inside the
  full batched function hung in XLA, reproducibly, on 16-row problems; small ones run.)
* ``"mpax"``: PDLP (``r2HPDHG``) under jit with an ``iteration_limit`` (default 20000); first
  order, thousands of matrix-vector products; in float32 it often stops short of 1e-5.
* ``"jaxopt"``: jaxopt ``BoxOSQP`` (ADMM, ``Q = 0``); on these LPs it does not reach 1e-3 in 4000
  iterations on many problems, so its default tolerance is 1e-2 and failures are common.

``"ipm"`` is the default because it is the only one that certifies every problem of a
THUMOS14-sized workload in float32 and matches scipy's HiGHS, and it is the fastest
(``benchmarks/linpro.py``; figures in the README's Performance section).

Float32: the LPs are highly degenerate; the interior point floors the complementarity pairs at
``sqrt(eps)`` inside the Newton system (as qpax does), which certifies all realistic problems,
but a rare ill-conditioned one (~0.3 % of adversarial random problems in the tests) fails the
certificate and gets zero labels (``STATUS_FAILED``, counted). Enable x64 for exact labels.

Modules: ``constraints`` (rows of eq. 5), ``blocks`` (decomposition and reduction),
``elastic_lp`` (the block LP and its certificate), ``ipm`` and ``solvers`` (solvers), ``tiers``
(blocks of a size solved together), ``labels`` (``linpro_solve``, ``linpro_assemble``,
``linpro_labels``).
"""

from gaufuse_jax._src.linpro.constraints import NORMALIZATIONS
from gaufuse_jax._src.linpro.constraints import instance_areas
from gaufuse_jax._src.linpro.constraints import linpro_constraints
from gaufuse_jax._src.linpro.labels import STATUS_FAILED
from gaufuse_jax._src.linpro.labels import STATUS_RELAXED
from gaufuse_jax._src.linpro.labels import STATUS_SOLVED
from gaufuse_jax._src.linpro.labels import LinproSolution
from gaufuse_jax._src.linpro.labels import linpro_assemble
from gaufuse_jax._src.linpro.labels import linpro_labels
from gaufuse_jax._src.linpro.labels import linpro_solve
from gaufuse_jax._src.linpro.solvers import SOLVERS
from gaufuse_jax._src.linpro.solvers import solve_elastic_lp
