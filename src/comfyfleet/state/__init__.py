"""State adapter: the SQL database of instances, jobs, events and costs."""
