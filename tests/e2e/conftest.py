"""pytest's view of the end-to-end scenarios (make e2e runs them with pytest-xdist, one local AWS per
class on each worker): each scenario's run time as it ends, and for a failing one what an
operator would look at first, the tail of its executions' histories and the local AWS's log lines
written while it ran (Harness.diagnostics)."""

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" and report.failed:
        case = getattr(item, "instance", None)
        diagnostics = getattr(case, "diagnostics", None)
        if diagnostics is not None:
            try:
                report.sections.append(("what the local AWS saw", diagnostics()))
            except Exception as error:  # the diagnostics must never hide the failure itself
                report.sections.append(("what the local AWS saw", f"(could not be read: {error!r})"))
    return report


_config = []


def pytest_configure(config):
    _config.append(config)


def pytest_runtest_logreport(report):
    """One line per scenario with its run time and worker, as it ends (never asserted)."""
    if report.when != "call" or not _config or hasattr(report, "context"):  # a subtest's report
        return
    reporter = _config[0].pluginmanager.get_plugin("terminalreporter")
    scenario = report.nodeid.split("::", 1)[-1].replace("::", ".")
    worker = getattr(report, "node", None)
    where = f" on {worker.gateway.id}" if worker is not None else ""
    reporter.write_line(f"  [{scenario}: {report.duration:.1f} s{where}] {report.outcome}")
