"""The Overview page: the enrollment funnel, what needs attention, and sync health."""
