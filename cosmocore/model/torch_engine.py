"""The ``torch`` engine: this project's decode loop on the policy's own PyTorch model.

What it saves over ``model.generate`` on a batch of task prompts (see docs/ENGINES.md):

* **the shared prompt prefix is prefilled once.** Every task prompt starts with the same system
  prompt and instructions; identical prompts (several samples of one task) are identical to the
  end. The prefix common to the batch runs once at batch 1, its keys and values are shared by
  every row, then each distinct prompt's own suffix is prefilled in one batch and the rows are
  copied out to the samples. Rows are laid out ``[shared prefix | pads | own suffix]`` with
  position ids that skip the pads, so each row sees exactly its own prompt.
* **a reply stops at the end of its code block** (``stops``), and finished rows leave the batch.
* **prompt-lookup drafts** (``prompt_lookup``): each step feeds the chosen token plus up to
  ``draft_tokens`` guessed ones and keeps the guesses only while they equal the token the model
  picks at that position (argmax, or a draw from ``softmax(logits / T)``). Rejected positions stay
  in the key/value cache but are masked out for good.

So greedy replies are the plain greedy decoding's (up to float noise in near-ties, checked on the
eval prompts in tests and by ``benchmarks/rollout_engine.py``), and a sampled token is drawn from
the policy's own distribution at its own position. The behaviour log-probs and entropies are
``log softmax(logits / T)`` of those same forwards: the PyTorch policy's, as in the ``hf`` engine.

With a frozen blocks' cache and prompts that come back (``keep_prompts``), the prompt's lower keys
and values come from ``FrozenPrefix.prompt_cache`` instead of the shared-prefix prefill.
"""
from __future__ import annotations


import torch
from transformers import DynamicCache
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from cosmocore.model.batching import left_pad, positions
from cosmocore.model.generation import Generation, Policy
from cosmocore.model.prompt_lookup import draft
from cosmocore.model.stops import CodeBlockStop
from miniworld.extract import extract_code



def common_prefix(rows: list[tuple[int, ...]]) -> int:
    """Length of the longest prefix all ``rows`` share."""
    first, n = rows[0], min(len(r) for r in rows)
    for other in rows[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n


def prefix_groups(rows: list[tuple[int, ...]], min_shared: int) -> list[tuple[int, list[int]]]:
    """Rows grouped by a common prefix worth prefilling once: ``[(prefix length, row indices)]``.
    Neighbours in sorted order join a group while they keep at least half of its prefix (and
    ``min_shared`` tokens); every row keeps one token of its own (the last prompt token's logits
    start the reply). A row alone, or a prefix under ``min_shared``, gets length 0."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    groups: list[tuple[int, list[int]]] = []
    for i in order:
        if groups:
            length, members = groups[-1]
            lcp = common_prefix([rows[members[0]][:length], rows[i]])
            if lcp >= max(min_shared, length // 2):
                groups[-1] = (lcp, members + [i])
                continue
        groups.append((len(rows[i]), [i]))
    out = []
    for length, members in groups:
        length = min(length, min(len(rows[m]) for m in members) - 1)
        out.append((length if len(members) > 1 and length >= min_shared else 0, members))
    return out


class _Batch:
    """The rows still decoding: their key/value cache, which cache slots each row may attend to,
    the position its next token takes, and the token already chosen to come next."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor, next_pos: torch.Tensor, logits: torch.Tensor) -> None:
        self.cache, self.mask, self.next_pos, self.logits = cache, mask, next_pos, logits
        self.rows = list(range(mask.shape[0]))  # original row of each batch row

    def keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.next_pos = self.mask[index], self.next_pos[index]
        self.rows = [self.rows[r] for r in keep]


class TorchEngine:
    """Shared-prefix prefill, stop at the code block, prompt-lookup drafts; plain PyTorch."""

    name = "torch"

    def __init__(self, draft_tokens: int = 6, min_shared_prefix: int = 8) -> None:
        self.draft_tokens = draft_tokens
        self.min_shared_prefix = min_shared_prefix
        self.drafted = self.accepted = 0  # counters, for benchmarks

    def sync(self, policy: Policy) -> None:
        """Nothing to do: this engine runs the policy's own module."""

    # ---- prefill ----------------------------------------------------------------------------

    def _prefill_shared(self, policy: Policy, prompts: list[list[int]]) -> tuple[_Batch, list[list[float]]]:
        """Each group's common prefix once (batch 1), each distinct prompt's suffix once (one
        batch), then copied out to every row; also each prompt's mean final hidden state.
        Rows are ``[pads | their group's prefix | pads | own suffix]``: keys carry their rotary
        positions already, so where a prefix sits in the cache does not matter, only the mask."""
        decoder, head, dev = policy.model.get_decoder(), policy.model.get_output_embeddings(), policy.device
        distinct = list(dict.fromkeys(tuple(p) for p in prompts))
        groups = prefix_groups(distinct, self.min_shared_prefix)
        shared = [0] * len(distinct)
        for length, members in groups:
            for u in members:
                shared[u] = length
        width = max(shared)
        total = torch.zeros((len(distinct), decoder.config.hidden_size), dtype=torch.float32, device=dev)
        prefix_mask = torch.zeros((len(distinct), width), dtype=torch.long, device=dev)
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for length, members in groups:
            if not length:
                continue
            part = DynamicCache(config=decoder.config)
            ids = torch.tensor([distinct[members[0]][:length]], device=dev)
            hidden = decoder(input_ids=ids, position_ids=torch.arange(length, device=dev)[None], cache=part,
                             use_cache=True).last_hidden_state
            rows = torch.tensor(members, device=dev)
            total[rows] += hidden[0].float().sum(0)
            prefix_mask[rows, width - length:] = 1
            for j, layer in enumerate(part.layers):
                if len(layers) <= j:
                    shape = (len(distinct), *layer.keys.shape[1:2], width, layer.keys.shape[-1])
                    layers.append((layer.keys.new_zeros(shape), layer.values.new_zeros(shape)))
                layers[j][0][rows, :, width - length:] = layer.keys[0]
                layers[j][1][rows, :, width - length:] = layer.values[0]
        cache = DynamicCache(config=decoder.config)
        for j, (keys, values) in enumerate(layers):
            cache.update(keys, values, j)
        suffix, suffix_mask = left_pad([p[n:] for p, n in zip(distinct, shared)], policy.tokenizer.pad_token_id, dev)
        mask = torch.cat([prefix_mask, suffix_mask], 1)
        pos = torch.tensor(shared, device=dev)[:, None] + positions(suffix_mask)
        hidden = decoder(input_ids=suffix, attention_mask=mask, position_ids=pos, cache=cache,
                         use_cache=True).last_hidden_state
        logits = head(hidden[:, -1])
        keep = suffix_mask.bool().unsqueeze(-1)
        total += torch.where(keep, hidden.float(), torch.zeros((), device=dev)).sum(1)
        states = total / torch.tensor([len(p) for p in distinct], dtype=torch.float32, device=dev)[:, None]
        row_of = {p: i for i, p in enumerate(distinct)}
        index = torch.tensor([row_of[tuple(p)] for p in prompts], device=dev)
        cache.batch_select_indices(index)
        batch = _Batch(cache, mask[index], pos[index, -1] + 1, logits[index])
        return batch, states[index].cpu().tolist()

    def _prefill_frozen(self, policy: Policy, prompts: list[list[int]]) -> _Batch:
        """Prompts that come back: all but their last token from the frozen blocks' cache."""
        decoder, head = policy.model.get_decoder(), policy.model.get_output_embeddings()
        ids, mask = left_pad(prompts, policy.tokenizer.pad_token_id, policy.device)
        pos = positions(mask)
        cache = policy.frozen_prefix.prompt_cache(policy.model, ids, mask, pos)
        hidden = decoder(input_ids=ids[:, -1:], attention_mask=mask, position_ids=pos[:, -1:], cache=cache,
                         use_cache=True).last_hidden_state
        return _Batch(cache, mask, pos[:, -1] + 1, head(hidden[:, -1]))

    # ---- decoding ---------------------------------------------------------------------------

    @staticmethod
    def _choose(logits: torch.Tensor, greedy: bool, temperature: float) -> tuple[torch.Tensor, ...]:
        """The token the policy picks at each position ``[b, n]``, its log-prob and the entropy."""
        scaled = logits.float() / temperature
        if greedy:
            chosen = scaled.argmax(-1)
        else:
            probs = torch.softmax(scaled, -1)
            chosen = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
        return chosen, selective_log_softmax(scaled, chosen), entropy_from_logits(scaled)

    def generate(self, policy: Policy, prompts: list[list[int]], max_new_tokens: int, greedy: bool,
                 keep_prompts: bool) -> list[Generation]:
        with torch.no_grad():
            if keep_prompts and policy.frozen_prefix is not None and min(len(p) for p in prompts) >= 2:
                batch, states = self._prefill_frozen(policy, prompts), [None] * len(prompts)
            else:
                batch, states = self._prefill_shared(policy, prompts)
            ids, logprobs, entropy = self._decode(policy, prompts, batch, max_new_tokens, greedy)
        results = []
        for i, prompt in enumerate(prompts):
            text = policy.tokenizer.decode(ids[i], skip_special_tokens=True)
            results.append(Generation(prompt_ids=prompt, completion_ids=ids[i], logprobs=logprobs[i],
                                      entropy=entropy[i], text=text, code=extract_code(text), prompt_state=states[i]))
        return results

    def _decode(self, policy: Policy, prompts: list[list[int]], batch: _Batch, max_new_tokens: int,
                greedy: bool) -> tuple[list[list[int]], list[list[float]], list[list[float]]]:
        decoder, head, dev = policy.model.get_decoder(), policy.model.get_output_embeddings(), policy.device
        n = len(prompts)
        ids: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        entropy: list[list[float]] = [[] for _ in range(n)]
        finished = [max_new_tokens < 1] * n
        stop, eos = CodeBlockStop(policy.tokenizer, n), set(policy.eos_token_ids)

        def emit(i: int, token: int, lp: float, ent: float) -> None:
            ids[i].append(token)
            logprobs[i].append(lp)
            entropy[i].append(ent)
            if token in eos or stop.push(i, token) or len(ids[i]) >= max_new_tokens:
                finished[i] = True

        chosen, lps, ents = self._choose(batch.logits[:, None], greedy, policy.temperature)
        nxt = [(int(c), float(lp), float(e)) for c, lp, e in zip(chosen[:, 0], lps[:, 0], ents[:, 0])]
        while True:
            # the token chosen last step is part of the reply
            for r, i in enumerate(batch.rows):
                if not finished[i]:
                    emit(i, *nxt[r])
            keep = [r for r, i in enumerate(batch.rows) if not finished[i]]
            if not keep:
                break
            batch.keep(keep)
            nxt = [nxt[r] for r in keep]
            # feed it, with drafts that follow it, and let the model check the drafts
            drafts = [draft(torch.tensor(prompts[i] + ids[i]), min(self.draft_tokens, max_new_tokens - len(ids[i])))
                      for i in batch.rows]
            width = 1 + max(len(d) for d in drafts)
            feed = torch.tensor([[t] + d + [t] * (width - 1 - len(d)) for (t, _, _), d in zip(nxt, drafts)], device=dev)
            b = feed.shape[0]
            step = torch.arange(width, device=dev)
            mask = torch.cat([batch.mask, torch.ones((b, width), dtype=torch.long, device=dev)], 1)
            hidden = decoder(input_ids=feed, attention_mask=mask, position_ids=batch.next_pos[:, None] + step[None],
                             cache=batch.cache, use_cache=True).last_hidden_state
            chosen, lps, ents = self._choose(head(hidden), greedy, policy.temperature)
            chosen_l, lps_l, ents_l = chosen.tolist(), lps.tolist(), ents.tolist()
            valid = torch.zeros((b, width), dtype=torch.long, device=dev)
            for r, (i, d) in enumerate(zip(batch.rows, drafts)):
                a = 0
                while a < len(d) and chosen_l[r][a] == d[a] and not finished[i]:
                    emit(i, d[a], lps_l[r][a], ents_l[r][a])
                    a += 1
                self.drafted += len(d)
                self.accepted += a
                valid[r, : 1 + a] = 1
                nxt[r] = (chosen_l[r][a], lps_l[r][a], ents_l[r][a])
            batch.mask = torch.cat([batch.mask, valid], 1)
            batch.next_pos = batch.next_pos + valid.sum(1)
        return ids, logprobs, entropy
