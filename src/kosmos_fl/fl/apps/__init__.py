"""The Flower apps of a session: ServerApp, ClientApp, the FAB that names them, and what the
ServerApp hands over at the end (plots, registered model)."""
