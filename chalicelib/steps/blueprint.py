"""The Blueprint that carries every step Lambda; app.py registers it."""
from chalice import Blueprint

steps_bp = Blueprint(__name__)
