# Tests for weekly time windows, same-day and overnight.
package portcullis.authz_test

import data.portcullis.authz

# Friday 22:00 to Saturday 06:00 UTC.
overnight := {"days": [5], "from_minute": 1320, "to_minute": 360}

# Saturday 22:00 to Sunday 06:00: the day after Saturday (6) is Sunday (0).
weekend_night := {"days": [6], "from_minute": 1320, "to_minute": 360}

clock(weekday, minute) := {"now_ms": 1800000000000, "weekday": weekday, "minute_of_day": minute}

test_same_day_window_is_start_inclusive_and_end_exclusive if {
	window := {"days": [1], "from_minute": 540, "to_minute": 1020}
	authz.in_window(window, clock(1, 540))
	authz.in_window(window, clock(1, 1019))
	not authz.in_window(window, clock(1, 1020))
	not authz.in_window(window, clock(1, 539))
	not authz.in_window(window, clock(2, 600))
}

test_overnight_window_holds_from_its_start_to_its_end_next_day if {
	authz.in_window(overnight, clock(5, 1320))
	authz.in_window(overnight, clock(5, 1439))
	authz.in_window(overnight, clock(6, 0))
	authz.in_window(overnight, clock(6, 359))
}

test_overnight_window_holds_nowhere_else if {
	not authz.in_window(overnight, clock(5, 1319))
	not authz.in_window(overnight, clock(6, 360))
	not authz.in_window(overnight, clock(6, 1320)) # Saturday evening: not a listed day
	not authz.in_window(overnight, clock(5, 100)) # Friday early: Thursday is not listed
}

test_overnight_window_wraps_the_week if {
	authz.in_window(weekend_night, clock(0, 200))
	not authz.in_window(weekend_night, clock(1, 200))
}

test_empty_window_holds_never if {
	not authz.in_window({"days": [0, 1, 2, 3, 4, 5, 6], "from_minute": 600, "to_minute": 600}, clock(3, 600))
}

test_overnight_grant_allows_its_night_and_denies_the_day if {
	night_shift := object.union(directory, {
		"agents": {"agt_night": {"state": "active", "owner": "alice@example.com"}},
		"entitlements": {"agt_night": {"demo": [{"actions": ["read"], "window": overnight}]}},
	})
	request := call("agt_night", "demo", "report", "read", {})
	night := authz.decision with input as at(request, clock(6, 120)) with data.directory as night_shift
	night.outcome == "allow"
	day := authz.decision with input as at(request, clock(6, 600)) with data.directory as night_shift
	day.reasons == ["outside_time_window"]
}
