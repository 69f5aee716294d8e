import random

import pytest

from training.tasks import (
    GENERATORS,
    TEMPLATES,
    arithmetic,
    check,
    final_answer,
    make_split,
    solved,
    steps_hold,
    well_formed,
)


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_every_generated_solution_passes_its_own_checker(task):
    rng = random.Random(0)
    for _ in range(200):
        problem = GENERATORS[task](rng)
        assert check(task, problem.solution, problem.answer), problem
        assert solved(problem.__dict__, problem.solution), problem


def test_arithmetic_numbers_stay_below_max_number():
    rng = random.Random(1)
    for _ in range(300):
        problem = arithmetic(rng, max_number=30, operations=(2,))
        numbers = [int(n) for n in __import__("re").findall(r"\d+", problem.prompt + problem.solution)]
        assert max(numbers) < 30


def test_two_operation_templates_show_two_steps():
    rng = random.Random(2)
    for template in TEMPLATES[2]:
        made = None
        while made is None:
            made = template(rng, 50)
        assert len(made[1]) == 2


@pytest.mark.parametrize(
    "response",
    [
        "#### 3 or 4",
        "#### about 3",
        "#### 3.0",
        "#### 3 apples",
        "#### three",
        "the answer is 3",
        "#### 3\nthen again\n#### 4",
        "####",
        "#### +3",
        "# 3",
    ],
)
def test_checker_rejects_malformed_or_hedged_answers(response):
    assert not check("arithmetic", response, "3")


def test_checker_accepts_the_exact_final_value_after_reasoning():
    assert check("arithmetic", "2 + 1 = 3\n#### 3", "3")
    assert check("arithmetic", "#### 4\nno, wait\n#### 3", "3")  # the last final line counts


def test_spelling_must_be_dashed_lowercase_letters():
    assert check("spell", "#### o-u-t", "o-u-t")
    assert not check("spell", "#### o u t", "o-u-t")
    assert not check("spell", "#### O-U-T", "o-u-t")
    assert not check("spell", "#### o-u-t-", "o-u-t")


def test_final_answer_is_none_without_a_final_line():
    assert final_answer("I think it is 3.") is None


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_train_and_test_splits_share_no_problem(task):
    test = make_split(task, 100, seed=1)
    train = make_split(task, 500, seed=0, exclude=frozenset(p.prompt for p in test))
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert len({p.prompt for p in train}) == 500


def test_same_seed_same_problems():
    assert make_split("arithmetic", 50, seed=3) == make_split("arithmetic", 50, seed=3)


def test_asking_for_more_distinct_problems_than_exist_is_an_error():
    with pytest.raises(ValueError, match="distinct problems"):
        make_split("spell", 5000, seed=0)


def test_a_right_answer_through_a_wrong_step_is_not_solved():
    # Two of a demo SFT model's samples: the checker passes both.
    prompt = "Emily has 25 oranges and buys 20 more. Emily shares them equally among 5 friends. How many ..."
    lucky = "Emily has 25 + 20 = 40 oranges.\nEach friend gets 40 / 5 = 9.\n#### 9"
    worked = "Emily has 25 + 20 = 45 oranges.\nEach friend gets 45 / 5 = 9.\n#### 9"
    problem = {"task": "arithmetic", "prompt": prompt, "answer": "9"}
    assert check("arithmetic", lucky, "9") and not solved(problem, lucky)
    assert solved(problem, worked)
    assert not steps_hold("arithmetic", prompt, "#### 9")  # no step shown
    assert not steps_hold("arithmetic", prompt, "25 + 20 = 45\n45 / 5 = 9\n#### 8")  # not the last result
    assert not steps_hold("arithmetic", prompt, "25 + 21 = 46\n46 - 37 = 9\n#### 9")  # 21, 37: not given
    change = "One pen costs $4. Ava buys 3 pens and pays with $20. How much change does Ava get?"
    assert steps_hold(
        "arithmetic", change, "The pens cost 3 * $4 = $12.\nThe change is $20 - $12 = $8.\n#### 8"
    )
    assert not steps_hold("arithmetic", "Share 7 among 2.", "Each gets 7 / 2 = 3.\n#### 3")  # not whole


def test_a_letter_count_must_spell_the_word_it_was_asked_about():
    prompt = 'How many times does the letter "n" appear in the word "stop"?'
    assert steps_hold("count_letters", prompt, "Spelling it out: s-t-o-p.\nCounting n: no n.\n#### 0")
    assert not steps_hold("count_letters", prompt, "Spelling it out: a-r-i-m.\nCounting n: no n.\n#### 0")
    assert not steps_hold("count_letters", prompt, "#### 0")
    assert steps_hold("title_choice", "any", "#### B")  # no steps to read


def test_well_formed_needs_a_final_line_in_the_answer_form_right_or_wrong():
    assert well_formed("arithmetic", "3 + 4 = 7\n#### 8")  # wrong, but well formed
    assert not well_formed("arithmetic", "the answer is 7")
    assert not well_formed("arithmetic", "#### about 7")
    assert well_formed("spell", "#### p-l-a-n") and not well_formed("spell", "#### plan")
