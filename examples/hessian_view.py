"""The MAML meta-gradient three ways, for one sinusoid task: the derivation made runnable.

    1. the learner:        mm.grad through the inner update (create_graph=True)
    2. explicit:           (I − α H) ∇φ L(φ, Q), with H = mm.hessian of the support loss
    3. first-order:        ∇φ L(φ, Q) alone (FOMAML drops the Hessian term)

(1) and (2) agree to rounding error; (3) differs by α H ∇φ L(φ, Q).
Run: python examples/hessian_view.py [--alpha 0.01] [--shots 10] [--hidden 10]
"""
import argparse

import numpy as np

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.data import SinusoidTasks
from minimeta.experiments.options import count
from minimeta.learners import MAML


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.01, metavar="α",
                        help="the inner step size, > 0 (default: 0.01)")
    parser.add_argument("--shots", type=count(1), default=10, metavar="K",
                        help="support and query points of the task, K each (default: 10)")
    parser.add_argument("--hidden", type=count(1), default=10, metavar="h",
                        help="hidden width of the 1-h-h-1 MLP: n = h²+4h+1 parameters, "
                             "H is n×n (default: 10)")
    args = parser.parse_args(argv)
    if not args.alpha > 0:
        parser.error(f"--alpha must be > 0, got {args.alpha}")
    net = nn.mlp((1, args.hidden, args.hidden, 1), dtype=np.float64, init_std=0.5)
    names = list(net.named_parameters())
    shapes = [p.shape for p in net.parameters()]
    sizes = [int(np.prod(s)) for s in shapes]
    flat0 = np.concatenate([p.numpy().ravel() for p in net.parameters()])

    def model(x, params):  # the same network, its parameters one flat vector
        pieces = np.cumsum([0] + sizes)
        return net(x, {n: mm.reshape(params["theta"][a:b], s)
                       for n, a, b, s in zip(names, pieces[:-1], pieces[1:], shapes)})

    xs, ys, xq, yq = SinusoidTasks(seed=3, dtype=np.float64).sample(1, args.shots)[0]
    theta = {"theta": mm.tensor(flat0, requires_grad=True)}
    (learner,) = MAML(model, args.alpha, 1, loss="mse", params=theta).meta_gradient(
        [(xs, ys, xq, yq)])

    def support_loss(t):
        return F.mse_loss(model(mm.tensor(xs), {"theta": t}), ys)

    H = mm.hessian(support_loss, mm.tensor(flat0)).numpy()
    t = mm.tensor(flat0, requires_grad=True)
    phi = (t - args.alpha * mm.grad(support_loss(t), [t])[0]).detach().requires_grad_()
    (g_query,) = mm.grad(F.mse_loss(model(mm.tensor(xq), {"theta": phi}), yq), [phi])
    explicit = (np.eye(len(flat0)) - args.alpha * H) @ g_query.numpy()
    first = g_query.numpy()

    print(f"{len(flat0)} parameters, α = {args.alpha}, K = {args.shots} (|·|: 2-norms)")
    print(f"|H| (Frobenius) = {np.linalg.norm(H):.4g}, largest |eigenvalue| = "
          f"{np.max(np.abs(np.linalg.eigvalsh(H))):.4g}")
    print(f"|meta-gradient|                 = {np.linalg.norm(learner.numpy()):.6g}")
    print(f"max |learner − explicit|        = {np.max(np.abs(learner.numpy() - explicit)):.3e}")
    print(f"|learner − first-order|         = {np.linalg.norm(learner.numpy() - first):.6g}")
    print(f"|α H ∇φL| (what FOMAML drops)   = "     # the same vector as the line above
          f"{np.linalg.norm(args.alpha * H @ g_query.numpy()):.6g}")


if __name__ == "__main__":
    from minimeta.cli import script

    raise SystemExit(script(main))
