"""Plan jobs in priority order and report missed deadlines."""

from scheduler.jobs import validate


class JobQueue:
    def __init__(self):
        self.jobs = []

    def push(self, job):
        self.jobs.append(validate(job))

    def pop(self):
        """Remove and return the most urgent job."""
        if not self.jobs:
            raise IndexError("pop from an empty queue")
        best = min(self.jobs, key=lambda j: j.sort_key())
        self.jobs.remove(best)
        return best

    def plan(self):
        """(name, start, end) for every job run back to back in urgency order."""
        t = 0
        out = []
        for job in sorted(self.jobs, key=lambda j: j.sort_key()):
            out.append((job.name, t, t + job.duration))
            t += job.duration
        return out

    def late_jobs(self):
        """Names of jobs that would finish after their deadline."""
        by_name = {j.name: j for j in self.jobs}
        return [name for name, _, end in self.plan() if end > by_name[name].deadline]
