"""Parallel evaluation of sequential computation by fixed-point iteration.

A recurrence s_t = step(s_{t-1}, x_t), or an autoregressive computation whose step
sees every earlier output, is a triangular system of nonlinear equations; Jacobi,
block Gauss-Seidel, sliding-window Jacobi and Newton (DEER, quasi-DEER) iterations
solve it at all positions at once and are exact after at most T iterations.
"""

from jacscope.parallel._autoregressive import solve_autoregressive as solve_autoregressive
from jacscope.parallel._consistency import consistency_loss as consistency_loss
from jacscope.parallel._decoding import JacobiDecoding as JacobiDecoding
from jacscope.parallel._decoding import jacobi_decode as jacobi_decode
from jacscope.parallel._linear_recurrence import linear_recurrence as linear_recurrence
from jacscope.parallel._made import MADE as MADE
from jacscope.parallel._sequence import solve_sequence as solve_sequence
from jacscope.parallel._solution import SequenceSolution as SequenceSolution
from jacscope.parallel._speculative import SpeculativeSample as SpeculativeSample
from jacscope.parallel._speculative import speculative_jacobi_sample as speculative_jacobi_sample
from jacscope.parallel._transformer import CausalTransformer as CausalTransformer
