"""The named steps of `generate_batch`, one at a time: prompt sharing, left padding, writing a
decode step (stop sequences, EOS) and feeding a tool's output."""
import torch

from r1lab.rollout.sampler import _feed_tool_tokens, _Rows, _write_step, distinct_prompts, left_padded


def test_distinct_prompts_share_repeats_unless_asked_not_to():
    prompts = [[1, 2], [3], [1, 2], [3], [4]]
    assert distinct_prompts(prompts) == ([[1, 2], [3], [4]], [0, 1, 0, 1, 2])
    assert distinct_prompts(prompts, share_prompts=False) == (prompts, [0, 1, 2, 3, 4])


def test_left_padded_rows_and_mask():
    ids, attn = left_padded([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and attn.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_write_step_records_tokens_and_finds_eos_and_stop_sequences():
    rows = _Rows.empty(3, 4, pad_id=0, device="cpu", with_logprobs=True, with_tools=False)
    active = torch.tensor([0, 1, 2])
    assert _write_step(rows, active, torch.tensor([7, 8, 9]), torch.tensor([-0.5, -1.0, -2.0]), 0, eos=9,
                       stops=[torch.tensor([7, 8])]).tolist() == [False, False, True]  # row 2: EOS
    # step 1, rows 0 and 1 only: row 0 writes 8 after 7, the stop sequence [7, 8]
    assert _write_step(rows, torch.tensor([0, 1]), torch.tensor([8, 8]), torch.tensor([-0.25, -0.75]), 1, eos=9,
                       stops=[torch.tensor([7, 8])]).tolist() == [True, False]
    assert rows.out.tolist() == [[7, 8, 0, 0], [8, 8, 0, 0], [9, 0, 0, 0]] and rows.lengths.tolist() == [2, 2, 1]
    assert rows.logp[:, :2].tolist() == [[-0.5, -0.25], [-1.0, -0.75], [-2.0, 0.0]]


def test_fed_tool_tokens_replace_the_sample_with_log_prob_zero():
    rows = _Rows.empty(3, 4, pad_id=0, device="cpu", with_logprobs=True, with_tools=True)
    rows.forced = {2: [40, 41]}
    active = torch.tensor([False, True, True])  # row 0 has stopped
    tokens, logp, feeding = _feed_tool_tokens(rows, torch.tensor([1, 2, 3]), torch.tensor([-1.0, -2.0, -3.0]),
                                              active, torch.tensor([1, 2]), t=0)
    assert tokens.tolist() == [1, 2, 40] and logp.tolist() == [-1.0, -2.0, 0.0] and feeding.tolist() == [False, True]
    assert rows.forced == {2: [41]} and rows.from_tool[:, 0].tolist() == [False, False, True]
