"""One blueprint per resource of the admin API: ``pub``, ``retain``, ``session`` (+ kill), ``sub``, ``ops``.

Each handler takes already-validated parameters (``app.context.endpoint``) and
talks to the store through ``tidemq.store`` and ``tidemq.publish`` only.
"""

from .ops import bp as ops_bp
from .pub import bp as pub_bp
from .retain import bp as retain_bp
from .session import bp as session_bp
from .sub import bp as sub_bp

BLUEPRINTS = (pub_bp, retain_bp, session_bp, sub_bp, ops_bp)

__all__ = ["BLUEPRINTS"]
