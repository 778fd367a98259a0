"""The evaluation's analysis is the task's own (``Task.analysis``): eval never branches on the
task. The analyses themselves are tested with their tasks (tests/data/test_countdown.py,
tests/data/test_task.py)."""
import numpy as np

from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks import build_task
from r1lab.eval.answers import DISTANCE_CAP, task_analysis
from r1lab.rewards import get_reward

COUNTDOWN = CountdownTaskConfig(num_train=10, num_test=5, num_test_hard=2)


def test_task_analysis_is_the_tasks_own():
    task = build_task(COUNTDOWN)
    assert task_analysis(task) is task.analysis
    assert task.analysis.distance_cap == DISTANCE_CAP


def test_unicode_signs_get_the_value_key_and_distance_zero():
    """Issue 18 (a): ``(6 - 2) × 25`` scores 1 as a reward, so the eval keys it by its value and
    measures distance 0 (it used to get an ``invalid:`` key and the capped distance)."""
    task = build_task(COUNTDOWN)
    responses = ["<think>6-2=4 4*25=100</think>\n<answer>(6 - 2) × 25</answer>"]
    rows = {"numbers": [[6, 2, 25]], "target": [100]}
    assert get_reward(task.correctness_reward)(responses, **rows).tolist() == [1.0]
    analysis = task_analysis(task)
    assert analysis.answer_keys(responses, rows) == ["100"]
    assert analysis.distances(responses, rows).tolist() == [0.0]


def test_the_analysis_reads_the_answer_where_the_reward_does():
    """Issue 18 (b), the eval's side: an unclosed reasoning ends at the first ``<answer>`` (the
    demo's model misspells ``</think>``); keys and distances follow the reward's verdicts."""
    task = build_task(COUNTDOWN)
    responses = ["<think>6-2=4 4*25=100\n</thiok>\n<answer>(6 - 2) * 25</answer>",
                 "<think>x</think><answer>(6 - 2) * 25</answer>", "<think>6-2=4 4*25=100 so (6 - 2) * 25"]
    rows = {"numbers": [[6, 2, 25]] * 3, "target": [100] * 3}
    assert get_reward("countdown")(responses, **rows).tolist() == [1.0, 1.0, 0.0]
    assert task.analysis.answer_keys(responses, rows) == ["100", "100", None]
    assert np.array_equal(task.analysis.distances(responses, rows), [0.0, 0.0, DISTANCE_CAP])
