# Weekly UTC time windows of grants and delegations: {days, from_minute, to_minute}, days
# 0 = Sunday, start inclusive, end exclusive. A window whose end comes before its start runs
# overnight: from its start on a listed day to its end on the next day (an on-call shift
# Friday 22:00 to Saturday 06:00 is days [5], from 1320, to 360). Part of decision.rego's package.
package portcullis.authz

# METADATA
# description: A grant with a window holds only inside it; a grant without one at any time.
outside_window(grant, clock) if {
	window := grant.window
	not in_window(window, clock)
}

# METADATA
# description: A same-day window holds on its days between its minutes.
in_window(window, clock) if {
	window.from_minute < window.to_minute
	clock.weekday in window.days
	window.from_minute <= clock.minute_of_day
	clock.minute_of_day < window.to_minute
}

# METADATA
# description: An overnight window holds from its start to midnight on its days.
in_window(window, clock) if {
	window.from_minute > window.to_minute
	clock.weekday in window.days
	window.from_minute <= clock.minute_of_day
}

# METADATA
# description: An overnight window holds from midnight to its end on the day after one of its days.
in_window(window, clock) if {
	window.from_minute > window.to_minute
	day_before := (clock.weekday + 6) % 7
	day_before in window.days
	clock.minute_of_day < window.to_minute
}
