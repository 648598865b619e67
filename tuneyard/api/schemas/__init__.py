"""Request (create) and response (public) shapes, per resource. Requests refuse unknown fields;
responses are built from store rows field by field, so no ORM object ever leaves the API."""
