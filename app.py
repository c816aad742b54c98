"""Wiring only: the Chalice app, the HTTP API blueprint and its middleware, the step Lambdas."""
from chalice import Chalice

from chalicelib.api.auth import auth_bp
from chalicelib.api.console import console_bp
from chalicelib.api.middleware import api_middleware
from chalicelib.api.openapi import openapi_bp
from chalicelib.api.review_routes import review_bp
from chalicelib.api.routes import api_bp
from chalicelib.api.vector_routes import vector_bp

app = Chalice(app_name="data_pipeline")
app.api.binary_types.append("multipart/form-data")
app.register_blueprint(api_bp, url_prefix="/api/v0")
app.register_blueprint(vector_bp, url_prefix="/api/v0")
app.register_blueprint(review_bp, url_prefix="/api/v0")
app.register_blueprint(openapi_bp, url_prefix="/api/v0")
app.register_blueprint(console_bp)  # the web console's static pages at /console (public; its API calls carry the key)
app.register_middleware(api_middleware, "http")
app.register_blueprint(auth_bp)  # the API key authorizer Lambda of the deployed API (AuthMode SecretsManagerKey)

from chalicelib.steps import step_blueprints  # noqa: E402  (after the app: the steps need nothing from it)

for steps_bp in step_blueprints():
    app.register_blueprint(steps_bp)
