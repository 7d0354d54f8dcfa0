"""The pure OCI <-> FreeBSD jail/RCTL translator.

Data in, data out, with a loss report: no file I/O, no subprocess, no look at
the host (the CLI and backends read files and run commands). Rules come from
the YAML mapping files (:func:`load_rules`). FreeBSD output follows jail(8)
and rctl(8) as documented; it is untested on a real FreeBSD host.

Public API::

    rules = load_rules(["site.yaml"])
    plan = oci_to_freebsd(spec, "web", rules, bundle="/bundle")
    plan.to_json(); JailPlan.from_json(d)
    spec, losses = freebsd_to_oci(plan, rules)
    render_jail_conf(plan); render_rctl(plan)
    parse_jail_conf(text); parse_rctl(text)
"""

from mappings.loader import MappingRules, load_rules
from runtime_shim.translate.forward import check_jail_name, oci_to_freebsd
from runtime_shim.translate.model import DevfsRuleset, JailPlan, Loss, Mount, RctlRule
from runtime_shim.translate.render import parse_jail_conf, parse_rctl, render_jail_conf, render_rctl
from runtime_shim.translate.reverse import freebsd_to_oci
from runtime_shim.translate.spec import validate_oci

__all__ = [
    "DevfsRuleset",
    "JailPlan",
    "Loss",
    "MappingRules",
    "Mount",
    "RctlRule",
    "check_jail_name",
    "freebsd_to_oci",
    "load_rules",
    "oci_to_freebsd",
    "parse_jail_conf",
    "parse_rctl",
    "render_jail_conf",
    "render_rctl",
    "validate_oci",
]
