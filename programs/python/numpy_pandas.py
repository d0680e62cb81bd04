# A deterministic numpy + pandas workload for the real-programs test (programs/README.md).
# Everything printed depends only on the code: seeded RNG, fixed-precision formatting.
import numpy as np
import pandas as pd

print("numpy", np.__version__, "pandas", pd.__version__)

# Array math.
a = np.arange(12, dtype=np.float64).reshape(3, 4)
b = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
print("a @ b =")
print(np.array2string(a @ b, precision=4, suppress_small=True))
m = np.array([[4.0, 1.0, 2.0], [1.0, 3.0, 0.5], [2.0, 0.5, 5.0]])
w = np.linalg.eigvalsh(m)
print("eigvalsh:", " ".join(f"{x:.6f}" for x in w))
x = np.linalg.solve(m, np.array([1.0, 2.0, 3.0]))
print("solve:", " ".join(f"{v:.6f}" for v in x))
t = np.linspace(0.0, 1.0, 64, endpoint=False)
spectrum = np.abs(np.fft.rfft(np.sin(2 * np.pi * 5 * t) + 0.5 * np.cos(2 * np.pi * 12 * t)))
print("fft peaks:", sorted(int(i) for i in np.argsort(spectrum)[-2:]))
print("cumsum:", np.cumsum(np.arange(1, 11)).tolist())

rng = np.random.default_rng(12345)
samples = rng.normal(10.0, 2.0, 1000)
print(f"normal mean={samples.mean():.4f} std={samples.std():.4f}")

# Exceptions raised and caught through numpy's C code.
try:
    np.linalg.inv(np.zeros((2, 2)))
except np.linalg.LinAlgError as e:
    print("LinAlgError:", e)

# A DataFrame groupby.
df = pd.DataFrame(
    {
        "city": ["Oslo", "Lima", "Oslo", "Pune", "Lima", "Pune", "Oslo", "Lima"],
        "year": [2020, 2020, 2021, 2021, 2021, 2022, 2022, 2022],
        "sales": [10.5, 3.25, 7.0, 12.0, 4.75, 9.5, 11.25, 6.0],
        "units": [3, 1, 2, 5, 2, 4, 3, 2],
    }
)
g = df.groupby("city").agg(total=("sales", "sum"), mean_units=("units", "mean"), n=("year", "count"))
print(g.to_string())
pivot = df.pivot_table(index="year", columns="city", values="sales", aggfunc="sum", fill_value=0.0)
print(pivot.to_string())
df["rank"] = df.groupby("year")["sales"].rank(ascending=False).astype(int)
print(df.sort_values(["year", "rank"]).to_string(index=False))
rolled = pd.Series(rng.integers(0, 100, 20)).rolling(5).mean().dropna().round(2)
print("rolling:", rolled.tolist())
print(df.describe().round(3).to_string())
