"""How good a sentence VAE is, and whether its posterior collapsed.

Likelihood (nats per sentence, every sentence's EOS included):

* ``rec``: -E_q log p(x | z), one z per sentence; ``kl``: KL(q(z | x) || p(z)) in closed form;
  ``nll_elbo`` = rec + kl, the negative ELBO, an upper bound on -log p(x);
* ``nll_iwae``: the k-sample importance-weighted bound of Burda et al. 2016 ("Importance Weighted
  Autoencoders", eq. 8), tighter than the ELBO and exact as k grows; the log-sum-exp runs in fp32;
* ``ppl`` = exp(total NLL / total tokens), from the IWAE bound (``ppl_elbo`` from the ELBO), the per-token
  figure Bowman et al. 2016 report.

Use of the latent:

* ``mi``: the mutual information I(x; z) under q, estimated as He et al. 2019 ("Lagging Inference Networks and
  Posterior Collapse", their ``calc_mi``; also Hoffman & Johnson 2016): E_x[-H(q(z|x))] - E_z[log q(z)] with
  the aggregate posterior q(z) approximated by the mixture of the scored sentences' posteriors;
* ``active_units``: dimensions whose posterior mean moves with the input, Cov_x(E_q[z_i]) > 0.01 (Burda et
  al. 2016, section 5.2).

A collapsed posterior reads KL ~ 0, MI ~ 0 and no active units: the decoder models text alone and z carries
nothing. For a language model (latent_dim = 0) the NLL is exact: KL, MI and active units are 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genchain.errors import InputError
from genchain.models.text_vae import TextVAE, gaussian_kl_per_dim

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016


def diag_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dim, fp32; shapes broadcast."""
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """How many latent dimensions have Var_x(E_q[z_i]) above ``threshold``; ``mu`` is (N, D) posterior means."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.float().var(dim=0) > threshold).sum())


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 256) -> float:
    """I(x; z) in nats from the posteriors (N, D) of N sentences (He et al. 2019's estimator).

    One z per sentence is drawn from the global generator; log q(z) is the log of the mixture of all N posteriors.
    """
    mu, logvar = mu.float(), logvar.float()
    n, d = mu.shape
    neg_entropy = (-0.5 * d * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # (N, D)
    log_qz = torch.cat([
        torch.logsumexp(diag_gaussian_log_prob(z[i : i + chunk, None, :], mu[None], logvar[None]), dim=1)
        for i in range(0, n, chunk)
    ]) - math.log(n)  # (N,)
    return float(neg_entropy - log_qz.mean())


@torch.no_grad()
def iw_log_likelihood(model: TextVAE, tokens: torch.Tensor, lengths: torch.Tensor, k: int,
                      mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None,
                      max_rows: int = 2048) -> torch.Tensor:
    """The k-sample importance-weighted lower bound on log p(x) per sentence (B,), in nats, fp32.

    log p(x) >= log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x); k = 1 is the ELBO's
    one-sample estimate. Sentences are decoded about ``max_rows`` at a time whatever k is.
    """
    if k < 1:
        raise InputError(f"k (importance samples) must be >= 1, got {k}")
    if mu is None or logvar is None:
        mu, logvar = model.encode(tokens, lengths)
    b, d = mu.shape
    chunk = max(1, min(k, max_rows // max(b, 1)))
    std = torch.exp(0.5 * logvar)
    log_w = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        z = mu[:, None] + std[:, None] * torch.randn(b, n, d, device=mu.device)  # (B, n, D)
        log_px = model.log_likelihood(z.reshape(b * n, d), tokens.repeat_interleave(n, dim=0)).view(b, n)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)  # (B, n) standard normal prior
        log_qz = diag_gaussian_log_prob(z, mu[:, None], logvar[:, None])  # (B, n)
        log_w.append(log_px.float() + log_pz - log_qz)
    return torch.logsumexp(torch.cat(log_w, dim=1), dim=1) - math.log(k)


@torch.no_grad()
def score_sentences(model: TextVAE, tokens: torch.Tensor, lengths: torch.Tensor, *, k: int = 100,
                    batch_size: int = 128, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Every figure of the module docstring over sentences (N, T) with their lengths, in a fixed-noise pass.

    Training's random state is left as it was: the noise comes from a forked generator seeded with ``seed``.
    """
    from tqdm.auto import tqdm

    n = tokens.shape[0]
    if n == 0:
        raise InputError("there are no sentences to score")
    device = model.head.weight.device
    rec_sum = kl_sum = iw_sum = 0.0
    mus, logvars = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        bar = tqdm(total=n, desc=f"score k={k}", unit="sent", leave=False, disable=None if progress else True)
        for start in range(0, n, batch_size):
            lens = lengths[start : start + batch_size]
            x = tokens[start : start + batch_size, : int(lens.max())].to(device)
            if model.latent_dim == 0:  # a language model: the likelihood is exact
                nll = -model.log_likelihood(None, x)
                rec_sum += float(nll.sum())
                iw_sum += float(nll.sum())
            else:
                mu, logvar = model.encode(x, lens)
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                rec_sum -= float(model.log_likelihood(z, x).sum())
                kl_sum += float(gaussian_kl_per_dim(mu, logvar).sum())
                iw_sum -= float(iw_log_likelihood(model, x, lens, k, mu, logvar).sum())
                mus.append(mu.cpu())
                logvars.append(logvar.cpu())
            bar.update(x.shape[0])
        bar.close()
        mi = au = 0.0
        if mus:
            mu_all, logvar_all = torch.cat(mus), torch.cat(logvars)
            mi, au = mutual_information(mu_all, logvar_all), active_units(mu_all)
    tokens_total = int(lengths.sum())
    nll_elbo = (rec_sum + kl_sum) / n
    return {
        "nll_elbo": nll_elbo, "rec": rec_sum / n, "kl": kl_sum / n, "nll_iwae": iw_sum / n,
        "ppl": math.exp(iw_sum / tokens_total), "ppl_elbo": math.exp((rec_sum + kl_sum) / tokens_total),
        "mi": mi, "active_units": int(au), "latent_dim": model.latent_dim, "k": k if model.latent_dim else 0,
        "sentences": n, "tokens": tokens_total, "tokens_per_sentence": tokens_total / n,
    }
