"""Jobs and their ordering."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    name: str
    priority: int
    deadline: int
    duration: int = 1

    def sort_key(self):
        """Higher priority first, then earlier deadline, then name."""
        return (-self.priority, self.deadline, self.name)


def validate(job):
    """A job needs a positive duration and a non-negative deadline."""
    if job.duration <= 0:
        raise ValueError("duration must be positive")
    if job.deadline < 0:
        raise ValueError("deadline must be non-negative")
    return job
