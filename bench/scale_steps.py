"""`python -m bench.scale_steps`: CPU per optimizer step of each model at ML-25M table sizes (162,541 users,
59,047 items, one thread), and the CPU an epoch over 25M ratings would take from it; the LSTM batch draws user
history lengths as `bench.scale_data` does at 25M."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

import training.models as M
from training.fit import Optimizers
from training.models import mf_optimizer
from training.networks import DenseNet, SequenceLSTM

torch.set_num_threads(1)
N_USERS, N_ITEMS = 162_541, 59_047
rng = np.random.default_rng(0)


def cpu(f, n):
    f()
    t = time.process_time()
    for _ in range(n):
        f()
    return (time.process_time() - t) / n


# MF (plain, as ml-latest has genres -> featured; use featured path via mf_network with no features = plain)
mf = M.MatrixFactorization(N_USERS, N_ITEMS, 64)
opt = mf_optimizer(mf, 1e-3)
u = torch.randint(1, N_USERS, (2048,))
i = torch.randint(1, N_ITEMS, (2048,))
y = torch.rand(2048)


def mf_step():
    loss = M.mf_loss(mf, [u, i, y], 0.025)
    opt.zero_grad()
    loss.backward()
    opt.step()


t_mf = cpu(mf_step, 20)
d = DenseNet(N_USERS, N_ITEMS, 32, [64, 32], 0.2)
tables = [d.user_emb.weight, d.item_emb.weight, d.user_bias.weight, d.item_bias.weight]
rest = [p for p in d.parameters() if all(p is not t for t in tables)]
dopt = Optimizers(torch.optim.SparseAdam(tables, lr=3e-4), torch.optim.AdamW(rest, lr=3e-4))
u2, i2, y2 = u[:256], i[:256], y[:256]


def d_step():
    loss = F.mse_loss(d(u2, i2), y2) + 0.03 * (d.user_emb(u2).pow(2).sum(-1)).mean()
    dopt.zero_grad()
    loss.backward()
    dopt.step()


t_d = cpu(d_step, 30)
# LSTM: lengths as bench.scale_data draws them at 25M
n_ratings = 25_000_000
extra = rng.pareto(1.2, N_USERS)
extra *= (n_ratings - 20 * N_USERS) / extra.sum()
lengths = np.minimum(20 + np.floor(extra).astype(np.int64), N_ITEMS // 2)
batches = [rng.choice(lengths, 64) for _ in range(4)]
net = SequenceLSTM(N_USERS, N_ITEMS, 32, 64, 0.3)
lopt = torch.optim.AdamW(net.parameters(), lr=3e-3)


def l_batch(ls):
    W = 10
    ends = torch.from_numpy(np.sort(ls)[::-1].copy() + (-np.sort(ls)[::-1]) % W)
    width = int(ends[0])
    items = torch.randint(1, N_ITEMS, (64, width))
    ratings = torch.rand(64, width) * 4.5 + 0.5
    state = None
    total = torch.zeros(())
    for lo in range(0, width, W):
        rows = int((ends > lo).sum())
        if state is not None:
            state = (state[0][:, :rows], state[1][:, :rows], state[2][:rows])
        taste, state = net.run(items[:rows, lo : lo + W], ratings[:rows, lo : lo + W], state)
        state = (state[0].detach(), state[1].detach(), state[2])
        total = total + net.score_taste(taste[:, :-1], items[:rows, lo : lo + W]).pow(2).sum()
    lopt.zero_grad()
    total.backward()
    lopt.step()


t0 = time.process_time()
for b in batches:
    l_batch(b)
t_l = (time.process_time() - t0) / len(batches)
mean_max = np.mean([rng.choice(lengths, 64).max() for _ in range(2000)])
print(f"MF step (2048) {t_mf * 1000:.1f} ms CPU -> 25M epoch {t_mf * n_ratings * 0.95 / 2048:.0f} s")
print(f"dense step (256) {t_d * 1000:.1f} ms CPU -> 25M epoch {t_d * n_ratings * 0.95 / 256:.0f} s")
print(
    f"lstm batch (64 users, sampled max lens {[int(b.max()) for b in batches]}) {t_l:.2f} s CPU; "
    f"mean max len of a batch {mean_max:.0f}; batches/epoch {N_USERS / 64:.0f}"
)
