"""UDFs whose signatures an SQL engine reads to type them (Runner::signature)."""


def titled(title: str, n, *, sep="-") -> str:
    return sep.join([title] * n)


def column(x: "pd.Series[int]") -> "pd.Series[float]":
    return x / 2


def any_args(*args) -> int:
    return len(args)


class Stateful:
    def eval(self, when: "datetime.date", amount: "list[int]") -> bool:
        return True
