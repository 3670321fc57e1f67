"""Build a small left-to-right HMM, sample from it, then decode the samples.

Run:  python examples/demo.py
"""

import math

import torch

from pytorch_hmm import left_to_right
from pytorch_hmm.kernel import forward_backward, sample_paths, viterbi


def gaussian_log_density(x: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """``(N, T)`` observations -> ``(N, T, K)`` log N(x | mean_k, std^2)."""
    z = (x.unsqueeze(-1) - means) / std
    return -0.5 * z**2 - math.log(std * math.sqrt(2 * math.pi))


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    num_states, num_sequences, length = 5, 4, 60
    # a left-to-right chain (self-loop 0.8, no skips) with one Gaussian per state
    transitions = left_to_right(num_states, self_loop=0.8, dtype=torch.float64)
    log_init = torch.log(torch.tensor([1.0] + [0.0] * (num_states - 1), dtype=torch.float64))
    means = torch.tensor([0.0, 3.0, -2.0, 4.0, 1.0], dtype=torch.float64)
    std = 0.8

    states = sample_paths(transitions, log_init, num_sequences, length, generator=generator)
    x = means[states] + std * torch.randn(states.shape, generator=generator, dtype=torch.float64)
    lengths = torch.tensor([60, 50, 40, 30])
    log_emissions = gaussian_log_density(x, means, std)

    log_z, gamma = forward_backward(log_emissions, transitions, log_init, lengths)
    paths, scores = viterbi(log_emissions, transitions, log_init, lengths)

    print(f"{num_sequences} sequences from a {num_states}-state left-to-right Gaussian HMM")
    for b in range(num_sequences):
        n = int(lengths[b])
        accuracy = (paths[b, :n] == states[b, :n]).double().mean().item()
        confidence = gamma[b, :n].max(-1).values.mean().item()
        print(
            f"  seq {b}: T={n:3d}  log p(x)={log_z[b].item():8.2f}  best path score={scores[b].item():8.2f}  "
            f"Viterbi accuracy={accuracy:.1%}  mean posterior of MAP state={confidence:.3f}"
        )
        print(f"    true   : {''.join(map(str, states[b, :n].tolist()))}")
        print(f"    decoded: {''.join(map(str, paths[b, :n].tolist()))}")


if __name__ == "__main__":
    main()
