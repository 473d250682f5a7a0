"""The chart geometry (pages/charts.py): pure, no database."""

from pages import charts


def test_it_rounds_the_axis_up_to_one_two_four_or_eight():
    assert [charts.nice_max(v) for v in (0, 0.3, 1, 3, 7, 12, 180, 900)] == [1, 0.4, 1, 4, 8, 20, 200, 1000]


def test_its_grid_lines_read_as_round_numbers():
    chart = charts.grouped_bars([("a", [3.0])], series=["jobs"], unit="jobs/min")
    assert [label.text for label in chart.y_labels] == ["1", "2", "3", "4"]


def test_a_worker_speed_chart_puts_the_network_median_beside_each_bin():
    chart = charts.speed_chart({4: 10.0, 2: 30.0}, {4: 20.0})
    assert [b.title for b in chart.bars] == ["2: 30 tokens/s (this worker)", "4: 10 tokens/s (this worker)", "4: 20 tokens/s (network median)"]


def test_bars_stand_on_the_axis_and_the_tallest_fits():
    chart = charts.grouped_bars([("a", [2.0]), ("b", [4.0])], series=["jobs"], unit="jobs/min")
    assert [round(b.y + b.height, 2) for b in chart.bars] == [chart.bottom_y] * 2
    assert min(b.y for b in chart.bars) >= charts.TOP
    assert chart.bars[1].height == 2 * chart.bars[0].height
    assert chart.bars[0].title == "a: 2 jobs/min"


def test_a_missing_value_draws_no_bar():
    chart = charts.grouped_bars([("4", [10.0, None])], series=["this worker", "network median"], unit="tokens/s")
    assert [b.series for b in chart.bars] == [0]
    assert chart.bars[0].title == "4: 10 tokens/s (this worker)"


def test_an_empty_chart_says_so():
    chart = charts.grouped_bars([("00:01", [0]), ("00:02", [0])], series=["jobs"], unit="jobs/min")
    assert not chart.empty
    assert charts.grouped_bars([], series=["jobs"], unit="jobs/min").empty


def test_only_every_nth_x_label_is_drawn():
    chart = charts.grouped_bars([(str(i), [1]) for i in range(180)], series=["jobs"], unit="jobs/min", label_every=30)
    assert [label.text for label in chart.x_labels] == ["0", "30", "60", "90", "120", "150"]


def test_sizes_read_short():
    assert [charts.size_label(s) for s in (0.354, 2.83, 8.0, 45.25)] == ["0.35", "2.8", "8", "45"]
