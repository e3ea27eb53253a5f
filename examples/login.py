"""A skill that takes a secret: the password is sealed in the run and opened only inside the call.

export ORCHESTRA_SECRET_KEY=$(orchestra keygen)
orchestra run examples/login.py -i @examples/login.json
"""

from pydantic import BaseModel, SecretStr

from orchestra import Graph, skill


class LoginInput(BaseModel):
    user: str
    password: SecretStr


class Session(BaseModel):
    user: str
    token: str


@skill
def login(user: str, password: SecretStr) -> Session:
    # password.get_secret_value() is the real password
    ok = password.get_secret_value() == "correct horse battery staple"
    return Session(user=user, token=f"session-{user}" if ok else "")


graph = Graph("login", input_model=LoginInput)
graph.step("login", [login])

if __name__ == "__main__":
    import os

    from orchestra import run_sync
    from orchestra.secrets import generate_key

    os.environ.setdefault("ORCHESTRA_SECRET_KEY", generate_key())  # a key for this demo only
    result = run_sync(graph, {"user": "ann", "password": "correct horse battery staple"})
    print(result.status, result.outputs["login"])  # the token, never the password
