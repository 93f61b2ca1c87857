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
		"vault": {"delete": "deny", "rate_limit_class": "slow", "dlp": {
			"read": {"results": {"personal": "allow"}},
			"write": {"arguments": {"secrets": "redact", "personal": "sometimes"}},
		}},
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

# The bundle defaults (rego/portcullis/defaults/data.json), restated so a change to them is deliberate.
read_dlp_defaults := {
	"arguments": {"secrets": "redact", "personal": "allow"},
	"results": {"secrets": "redact", "personal": "redact"},
}

write_dlp_defaults := {
	"arguments": {"secrets": "block", "personal": "allow"},
	"results": {"secrets": "redact", "personal": "redact"},
}

all_blocked := {
	"arguments": {"secrets": "block", "personal": "block"},
	"results": {"secrets": "block", "personal": "block"},
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
		"visible": true,
		"obligations": {"rate_limit_class": "standard", "redact": [], "dlp": read_dlp_defaults},
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

test_agent_without_state_is_denied_even_with_no_grants if {
	patch := {"op": "add", "path": "/agents/agt_stateless", "value": {"owner": "eve@example.com"}}
	stateless := json.patch(directory, [patch])
	d := authz.decision with input as call("agt_stateless", "demo", "delete_record", "delete", {})
		with data.directory as stateless
	d.outcome == "deny"
	d.reasons == ["agent_suspended"]
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

test_a_delegation_names_the_rate_limit_class_of_calls_made_under_it if {
	careful := {"erin@example.com": {"agt_writer": {"demo": [{"actions": ["read"], "rate_limit_class": "careful"}]}}}
	d := authz.decision with input as on_behalf(call("agt_writer", "demo", "read_record", "read", {}), "erin@example.com")
		with data.directory as object.union(directory, {"delegations": careful})
	[d.outcome, d.obligations.rate_limit_class] == ["allow", "careful"]
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

# --- DLP obligations -----------------------------------------------------------------------------

test_dlp_defaults_per_action_class if {
	result(call("agt_reader", "demo", "read_record", "read", {})).obligations.dlp == read_dlp_defaults
	result(call("agt_writer", "demo", "update_record", "write", {})).obligations.dlp == write_dlp_defaults

	# Deletes get the write defaults; the call is denied, the obligation is still complete.
	result(call("agt_reader", "demo", "drop", "delete", {})).obligations.dlp == write_dlp_defaults
}

test_dlp_app_override_wins_per_action_class_and_leaf if {
	# vault relaxes personal data in read results only; the other leaves keep their defaults.
	result(call("agt_writer", "vault", "get", "read", {})).obligations.dlp == {
		"arguments": {"secrets": "redact", "personal": "allow"},
		"results": {"secrets": "redact", "personal": "allow"},
	}

	# Deletes on vault have no override: defaults.
	result(call("agt_writer", "vault", "destroy", "delete", {})).obligations.dlp == write_dlp_defaults
}

test_dlp_unknown_mode_becomes_block if {
	# vault's write override says "sometimes" for personal arguments: not a mode, so block.
	result(call("agt_writer", "vault", "put", "write", {})).obligations.dlp.arguments == {
		"secrets": "redact",
		"personal": "block",
	}
	authz.known_dlp_mode("redact") == "redact"
	authz.known_dlp_mode(null) == "block"
}

test_dlp_without_defaults_blocks_everything if {
	d := authz.decision with input as call("agt_reader", "demo", "read_record", "read", {})
		with data.directory as directory
		with data.portcullis.defaults as {}
	[d.outcome, d.obligations.dlp] == ["allow", all_blocked]
}

test_dlp_app_override_without_defaults_blocks_the_other_leaves if {
	d := authz.decision with input as call("agt_writer", "vault", "get", "read", {})
		with data.directory as directory
		with data.portcullis.defaults as {}
	d.obligations.dlp == {
		"arguments": {"secrets": "block", "personal": "block"},
		"results": {"secrets": "block", "personal": "allow"},
	}
}

test_dlp_for_an_invalid_action_class_blocks_everything if {
	result(call("agt_writer", "demo", "x", "admin", {})).obligations.dlp == all_blocked
}

# --- visibility in tool listings -----------------------------------------------------------------

listing(agent_id, app_id, tool, action_class) := call(agent_id, app_id, tool, action_class, {})

visible(request) if {
	authz.decision.visible with input as request with data.directory as directory
}

test_entitled_tools_are_visible_and_others_not if {
	visible(listing("agt_reader", "demo", "read_record", "read"))
	not visible(listing("agt_reader", "demo", "update_record", "write"))
	not visible(listing("agt_reader", "github", "list", "read"))
}

test_invalid_callers_and_targets_see_nothing if {
	not visible(listing("agt_nobody", "demo", "read_record", "read"))
	not visible(listing("agt_suspended", "demo", "read_record", "read"))
	not visible(listing("agt_reader", "nowhere", "x", "read"))
	not visible(listing("agt_writer", "demo", "x", "admin"))
}

test_disabled_tools_and_denied_deletes_are_hidden if {
	not visible(listing("agt_reader", "demo", "off", "read"))

	# The admin override makes purge a delete, which the reader may not do.
	not visible(listing("agt_reader", "demo", "purge", "read"))
	not visible(listing("agt_writer", "vault", "destroy", "delete"))
	visible(listing("agt_writer", "vault", "get", "read"))
}

test_listing_ignores_arguments_windows_and_approvals if {
	# Only grant for read with an argument allow-list and a window: a Saturday listing without arguments.
	saturday := {"now_ms": 1800000000000, "weekday": 6, "minute_of_day": 600}
	request := at(listing("agt_cond", "github", "get_file", "read"), saturday)
	authz.decision.outcome == "deny" with input as request with data.directory as directory
	visible(request)

	# A write needing approval is usable, so listed.
	visible(listing("agt_writer", "demo", "update_record", "write"))
	visible(listing("agt_writer", "github", "delete_repo", "delete"))
}

test_listing_honours_expiry_and_client_type if {
	# agt_cond's delete grant expired; its cursor-only write grant does not admit claude-code,
	# but its other write grant is still valid.
	not visible(listing("agt_cond", "github", "drop", "delete"))
	visible(listing("agt_cond", "github", "push", "write"))
	later := {"now_ms": 1800000000001, "weekday": 3, "minute_of_day": 600}
	not visible(at(listing("agt_cond", "github", "push", "write"), later))
	cursor := object.union(listing("agt_cond", "github", "push", "write"), {"agent": {"client_type": "cursor"}})
	visible(at(cursor, later))
}

test_delegated_listing_needs_both_sides if {
	visible(on_behalf(listing("agt_writer", "demo", "read_record", "read"), "erin@example.com"))
	not visible(on_behalf(listing("agt_writer", "demo", "update_record", "write"), "erin@example.com"))
	not visible(on_behalf(listing("agt_writer", "demo", "read_record", "read"), "mallory@example.com"))

	# Erin's github write delegation expired; her delete delegation needs approval but is listed.
	not visible(on_behalf(listing("agt_writer", "github", "push", "write"), "erin@example.com"))
	visible(on_behalf(listing("agt_writer", "github", "delete_repo", "delete"), "erin@example.com"))
}
