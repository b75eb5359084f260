"""One blueprint per resource of the admin API: ``pub``, ``retain``, ``session`` (+ kill), ``sub``, ``ops``.

Each handler takes already-validated parameters (``app.context.endpoint``) and
talks to the store through ``tidemq.store`` and ``tidemq.publish`` only.
"""

from app.endpoints.ops import bp as ops_bp
from app.endpoints.pub import bp as pub_bp
from app.endpoints.retain import bp as retain_bp
from app.endpoints.session import bp as session_bp
from app.endpoints.sub import bp as sub_bp

BLUEPRINTS = (pub_bp, retain_bp, session_bp, sub_bp, ops_bp)

__all__ = ["BLUEPRINTS"]
