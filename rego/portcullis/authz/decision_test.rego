# METADATA
# description: Tests for the tool-call authorization decision, covering every rule and reason code.
package portcullis.authz_test

import data.portcullis.authz

# A Wednesday, 10:00 UTC.
now := {"now_ms": 1800000000000, "weekday": 3, "minute_of_day": 600}

directory := {
	"agents": {
		"agt_reader": {"state": "active", "owner": "alice@example.com"},
		"agt_writer": {"state": "active", "owner": "alice@example.com"},
		"agt_suspended": {"state": "suspended", "owner": "bob@example.com"},
		"agt_cond": {"state": "active", "owner": "carol@example.com", "client_type": "claude-code"},
	},
	"apps": {
		"demo": {"tools": {
			"purge": {"action_class": "delete"},
			"off": {"disabled": true},
			"profile": {"redact": ["$.email"]},
		}},
		"github": {"delete": "require_approval", "approvers": ["alice@example.com", "dave@example.com"]},
		"vault": {"delete": "deny", "rate_limit_class": "slow"},
		"solo": {"delete": "require_approval", "approvers": ["alice@example.com"]},
		"noone": {"delete": "require_approval", "approvers": []},
	},
	"entitlements": {
		"agt_reader": {"demo": [{"actions": ["read"]}]},
		"agt_writer": {
			"demo": [{"actions": ["read", "write"], "require_approval": ["write"], "rate_limit_class": "bulk"}],
			"github": [{"actions": ["read", "write", "delete"]}],
			"vault": [{"actions": ["read", "delete"]}],
			"solo": [{"actions": ["delete"]}],
			"noone": [{"actions": ["delete"]}],
		},
		"agt_suspended": {"demo": [{"actions": ["read", "write", "delete"]}]},
		"agt_cond": {"github": [
			{"actions": ["read"], "arguments": {"repository": ["acme/api", "acme/web"]}, "redact": ["$.token"]},
			{"actions": ["write"], "expires_at": 1800000000001},
			{"actions": ["delete"], "expires_at": 1700000000000},
			{"actions": ["read"], "window": {"days": [1, 2, 3, 4, 5], "from_minute": 540, "to_minute": 1020}},
			{"actions": ["write"], "client_types": ["cursor"], "window": {"days": [0], "from_minute": 0, "to_minute": 1440}},
		]},
	},
	"delegations": {
		"dave@example.com": {"agt_writer": {"github": [{"actions": ["delete"]}]}},
		"erin@example.com": {"agt_writer": {
			"demo": [{"actions": ["read"], "redact": ["$.ssn"]}],
			"github": [
				{"actions": ["read"], "arguments": {"repository": ["acme/api"]}},
				{"actions": ["write"], "expires_at": 1700000000000},
				{"actions": ["delete"], "require_approval": ["delete"]},
			],
		}},
	},
}

call(agent_id, app_id, tool, action_class, arguments) := {
	"agent": {"id": agent_id, "client_type": object.get(directory.agents, [agent_id, "client_type"], "generic")},
	"app": {"id": app_id},
	"tool": {"name": tool},
	"action_class": action_class,
	"arguments": arguments,
	"time": now,
}

on_behalf(request, user) := object.union(request, {"user": {"id": user}})

at(request, clock) := object.union(request, {"time": clock})

verdict(request) := [d.outcome, d.reasons] if {
	d := authz.decision with input as request with data.directory as directory
}

result(request) := d if {
	d := authz.decision with input as request with data.directory as directory
}

# --- allow and the result shape ----------------------------------------------------------------

test_entitled_read_is_allowed if {
	result(call("agt_reader", "demo", "read_record", "read", {})) == {
		"outcome": "allow",
		"allow": true,
		"reasons": ["allowed"],
		"approvers": [],
		"action_class": "read",
		"obligations": {"rate_limit_class": "standard", "redact": []},
	}
}

test_write_needs_its_own_entitlement if {
	verdict(call("agt_reader", "demo", "update_record", "write", {})) == ["deny", ["no_entitlement"]]
}

test_entitlement_is_per_app if {
	verdict(call("agt_reader", "github", "list", "read", {})) == ["deny", ["no_entitlement"]]
}

# --- default deny and the directory ------------------------------------------------------------

test_unknown_agent_is_denied if {
	verdict(call("agt_nobody", "demo", "read_record", "read", {})) == ["deny", ["unknown_agent"]]
}

test_suspended_agent_is_denied_despite_entitlements if {
	verdict(call("agt_suspended", "demo", "read_record", "read", {})) == ["deny", ["agent_suspended"]]
}

test_unknown_app_is_denied if {
	verdict(call("agt_reader", "nowhere", "x", "read", {})) == ["deny", ["unknown_app"]]
}

test_unknown_action_class_is_denied if {
	verdict(call("agt_writer", "demo", "x", "admin", {})) == ["deny", ["invalid_action_class"]]
}

test_missing_action_class_is_denied if {
	request := json.remove(call("agt_writer", "demo", "x", "read", {}), ["action_class"])
	verdict(request) == ["deny", ["invalid_action_class"]]
}

test_empty_input_is_denied if {
	d := authz.decision with input as {} with data.directory as directory
	d.outcome == "deny"
	d.allow == false
	d.reasons == ["invalid_action_class", "unknown_agent", "unknown_app"]
}

test_no_directory_denies_everything if {
	d := authz.decision with input as call("agt_reader", "demo", "read_record", "read", {}) with data.directory as {}
	[d.outcome, d.reasons] == ["deny", ["unknown_agent", "unknown_app"]]
}

# --- admin settings of tools -------------------------------------------------------------------

test_admin_override_of_action_class_wins if {
	# The tool claims to be a read; the admin says it deletes, and the reader may not delete.
	d := result(call("agt_reader", "demo", "purge", "read", {}))
	[d.outcome, d.reasons, d.action_class] == ["deny", ["no_entitlement"], "delete"]
}

test_disabled_tool_is_denied if {
	verdict(call("agt_reader", "demo", "off", "read", {})) == ["deny", ["tool_disabled"]]
}

test_tool_redactions_become_obligations if {
	result(call("agt_reader", "demo", "profile", "read", {})).obligations.redact == ["$.email"]
}

# --- approvals ---------------------------------------------------------------------------------

test_write_can_require_approval_by_the_owner if {
	d := result(call("agt_writer", "demo", "update_record", "write", {}))
	[d.outcome, d.reasons, d.approvers, d.allow] == [
		"require_approval", ["write_requires_approval"],
		["alice@example.com"], false,
	]
}

test_read_under_the_same_grant_needs_no_approval if {
	d := result(call("agt_writer", "demo", "read_record", "read", {}))
	[d.outcome, d.obligations.rate_limit_class] == ["allow", "bulk"]
}

test_delete_can_require_approval_from_app_approvers if {
	d := result(call("agt_writer", "github", "delete_repo", "delete", {}))
	[d.outcome, d.reasons] == ["require_approval", ["delete_requires_approval"]]

	# The agent owner (alice) requests, so only dave may approve.
	d.approvers == ["dave@example.com"]
}

test_delete_approver_is_never_the_requesting_user if {
	d := result(on_behalf(call("agt_writer", "github", "delete_repo", "delete", {}), "dave@example.com"))

	# Dave asked; the app approvers minus dave leaves alice.
	[d.outcome, d.approvers] == ["require_approval", ["alice@example.com"]]
}

test_delete_without_another_approver_is_denied if {
	verdict(call("agt_writer", "solo", "drop", "delete", {})) == ["deny", ["no_eligible_approver"]]
	verdict(call("agt_writer", "noone", "drop", "delete", {})) == ["deny", ["no_eligible_approver"]]
}

test_delete_can_be_denied_for_an_app if {
	verdict(call("agt_writer", "vault", "destroy", "delete", {})) == ["deny", ["delete_denied"]]
	result(call("agt_writer", "vault", "get", "read", {})).obligations.rate_limit_class == "slow"
}

# --- conditions: arguments, expiry, time windows, client types ---------------------------------

test_argument_constraint_admits_listed_values if {
	d := result(call("agt_cond", "github", "get_file", "read", {"repository": "acme/web"}))
	[d.outcome, d.obligations.redact] == ["allow", ["$.token"]]
}

test_argument_constraint_rejects_other_values if {
	# Outside the weekday window too, so no grant for read matches.
	request := at(call("agt_cond", "github", "get_file", "read", {"repository": "evil/repo"}), {
		"now_ms": 1800000000000, "weekday": 6, "minute_of_day": 600,
	})
	verdict(request) == ["deny", ["argument_not_permitted", "outside_time_window"]]
}

test_missing_constrained_argument_is_rejected if {
	request := at(call("agt_cond", "github", "get_file", "read", {}), {
		"now_ms": 1800000000000, "weekday": 6, "minute_of_day": 600,
	})
	verdict(request) == ["deny", ["argument_not_permitted", "outside_time_window"]]
}

test_time_window_admits_inside_and_rejects_outside if {
	# No repository argument, but the second read grant's window admits Wednesday 10:00.
	verdict(call("agt_cond", "github", "search", "read", {})) == ["allow", ["allowed"]]
	late := at(call("agt_cond", "github", "search", "read", {}), {
		"now_ms": 1800000000000, "weekday": 3, "minute_of_day": 1020,
	})
	verdict(late) == ["deny", ["argument_not_permitted", "outside_time_window"]]
}

test_grant_is_valid_until_it_expires if {
	verdict(call("agt_cond", "github", "push", "write", {})) == ["allow", ["allowed"]]
	expired := at(call("agt_cond", "github", "push", "write", {}), {
		"now_ms": 1800000000001, "weekday": 3, "minute_of_day": 600,
	})
	verdict(expired) == ["deny", ["client_type_not_permitted", "entitlement_expired", "outside_time_window"]]
}

test_expired_grant_is_denied if {
	verdict(call("agt_cond", "github", "drop", "delete", {})) == ["deny", ["entitlement_expired"]]
}

test_conditions_fail_closed_without_time if {
	request := json.remove(call("agt_cond", "github", "push", "write", {}), ["time"])
	verdict(request) == ["deny", ["client_type_not_permitted", "entitlement_expired", "outside_time_window"]]
}

test_client_type_restriction if {
	sunday := {"now_ms": 1800000000001, "weekday": 0, "minute_of_day": 60}
	cursor := object.union(call("agt_cond", "github", "push", "write", {}), {"agent": {"client_type": "cursor"}})
	verdict(at(cursor, sunday)) == ["allow", ["allowed"]]
	verdict(at(call("agt_cond", "github", "push", "write", {}), sunday)) == [
		"deny",
		["client_type_not_permitted", "entitlement_expired"],
	]
}

# --- delegated calls: at most the intersection ---------------------------------------------------

test_delegated_call_within_both_is_allowed if {
	d := result(on_behalf(call("agt_writer", "demo", "read_record", "read", {}), "erin@example.com"))
	[d.outcome, d.obligations.redact] == ["allow", ["$.ssn"]]
}

test_delegation_never_exceeds_the_agent_entitlement if {
	# Erin delegated github reads, but reading is what the agent holds; deleting on demo it never held.
	request := on_behalf(call("agt_writer", "demo", "delete_record", "delete", {}), "erin@example.com")
	verdict(request) == ["deny", ["no_entitlement", "not_delegated"]]
}

test_agent_entitlement_never_exceeds_the_delegation if {
	# The agent may write on demo, Erin delegated only reads there.
	request := on_behalf(call("agt_writer", "demo", "update_record", "write", {}), "erin@example.com")
	verdict(request) == ["deny", ["not_delegated"]]
}

test_user_without_any_delegation_gets_nothing if {
	request := on_behalf(call("agt_writer", "demo", "read_record", "read", {}), "mallory@example.com")
	verdict(request) == ["deny", ["not_delegated"]]
}

test_delegation_argument_constraint if {
	ok := on_behalf(call("agt_writer", "github", "get_file", "read", {"repository": "acme/api"}), "erin@example.com")
	verdict(ok) == ["allow", ["allowed"]]
	bad := on_behalf(call("agt_writer", "github", "get_file", "read", {"repository": "acme/web"}), "erin@example.com")
	verdict(bad) == ["deny", ["delegation_argument_not_permitted"]]
}

test_expired_delegation_is_denied if {
	request := on_behalf(call("agt_writer", "github", "push", "write", {}), "erin@example.com")
	verdict(request) == ["deny", ["delegation_expired"]]
}

test_delegation_can_require_approval if {
	delete_with_approval := [{"actions": ["delete"], "require_approval": ["delete"]}]
	delegations := {"erin@example.com": {"agt_writer": {"noone": delete_with_approval}}}
	d := authz.decision with input as on_behalf(call("agt_writer", "github", "drop", "delete", {}), "erin@example.com")
		with data.directory as directory
	[d.outcome, d.reasons, d.approvers] == [
		"require_approval", ["delete_requires_approval"],
		["alice@example.com", "dave@example.com"],
	]
	d2 := authz.decision with input as on_behalf(call("agt_writer", "noone", "drop", "delete", {}), "erin@example.com")
		with data.directory as object.union(directory, {"delegations": delegations})
	[d2.outcome, d2.reasons] == ["deny", ["no_eligible_approver"]]
}

test_delegated_window_and_client_type_codes if {
	delegations := {"erin@example.com": {"agt_reader": {"demo": [
		{"actions": ["read"], "window": {"days": [6], "from_minute": 0, "to_minute": 60}},
		{"actions": ["read"], "client_types": ["cursor"]},
	]}}}
	d := authz.decision with input as on_behalf(call("agt_reader", "demo", "read_record", "read", {}), "erin@example.com")
		with data.directory as object.union(directory, {"delegations": delegations})
	d.reasons == ["delegation_client_type_not_permitted", "delegation_outside_time_window"]
}

test_read_can_require_approval if {
	entitlements := {"agt_reader": {"demo": [{"actions": ["read"], "require_approval": ["read"]}]}}
	d := authz.decision with input as call("agt_reader", "demo", "read_record", "read", {})
		with data.directory as object.union(directory, {"entitlements": entitlements})
	[d.outcome, d.reasons] == ["require_approval", ["read_requires_approval"]]
}

test_conditions_of_a_grant_alone if {
	grant := {"actions": ["read"], "expires_at": 10, "arguments": {"repo": ["a"]}, "client_types": ["cursor"]}
	authz.condition_failures(grant, {}) == {"entitlement_expired", "argument_not_permitted", "client_type_not_permitted"}
	call := {"time": {"now_ms": 9}, "arguments": {"repo": "a"}, "agent": {"client_type": "cursor"}}
	authz.condition_failures(grant, call) == set()
	authz.condition_failures({"actions": ["read"]}, {}) == set()
}
